package org.provisioner.steps

import org.junit.Test
import org.provisioner.RemoteLabel
import org.provisioner.harness.AgentLost
import org.provisioner.harness.DslNode
import org.provisioner.harness.JobDslStub
import org.provisioner.harness.Paths
import org.provisioner.harness.PipelineHarness

/** job_dsl/seed.groovy against the Job DSL stub, and the pipelines it defines against the harness. */
class JobDslTest {
    static final File SEED = Paths.file('job_dsl/seed.groovy')
    static final Map RECORD = [instance_type: 'g5.2xlarge', market: 'spot', duration_s: 3600, cost_usd: 0.61, mem_max_bytes: 1 << 30]

    static JobDslStub seeded() {
        JobDslStub dsl = new JobDslStub()
        dsl.run(SEED)
        return dsl
    }

    @Test
    void theSeedCreatesTheFolderAndJobs() {
        JobDslStub dsl = seeded()
        assert dsl.items.collectEntries { name, DslNode item -> [name, item.dslName] } == [
            'provisioner-examples': 'folder',
            'provisioner-examples/unit-tests': 'job',
            'provisioner-examples/gpu-smoke': 'job',
            'provisioner-examples/train-model': 'pipelineJob',
            'provisioner-examples/nightly-benchmark': 'pipelineJob',
            'provisioner': 'pipelineJob',
        ]
    }

    @Test
    void freestyleLabelsAreTheOnesRemoteLabelRenders() {
        JobDslStub dsl = seeded()
        DslNode unit = dsl.item('provisioner-examples/unit-tests')
        DslNode gpu = dsl.item('provisioner-examples/gpu-smoke')
        assert unit.dslValue('label') == RemoteLabel.render([vcpu: 4, mem: 8, market: 'spot'])
        assert gpu.dslValue('label') == RemoteLabel.render([gpu: 'a10g:1', timeout: '30m', market: 'on-demand', autotune: false])
        assert gpu.dslValue('label') == 'ec2 && "gpu=a10g:1" && timeout=30m && ondemand && exact'
        assert unit.dslAll('shell')*.dslArgs == [['make test']]
        assert unit.dslValue('logRotator/numToKeep') == 30
    }

    @Test
    void pipelineJobsCarryTheirScriptsAndParameters() {
        JobDslStub dsl = seeded()
        DslNode train = dsl.item('provisioner-examples/train-model')
        assert train.dslValue('definition/cps/script') == Paths.file('job_dsl/pipelines/train-model.groovy').text
        assert train.dslAll('sandbox').size() == 1
        assert train.dslAll('stringParam')*.dslArgs == [['GPUS', '1', 'How many A10G GPUs']]
        assert train.dslAll('choiceParam')[0].dslArgs[1] == ['any', 'spot', 'on-demand']
        assert dsl.item('provisioner-examples/nightly-benchmark').dslValue('properties/pipelineTriggers/triggers/cron/spec') == 'H 2 * * *'
    }

    @Test
    void theProjectJobBuildsFromTheJenkinsfile() {
        DslNode project = seeded().item('provisioner')
        assert project.dslValue('definition/cpsScm/scriptPath') == 'Jenkinsfile'
        assert project.dslValue('definition/cpsScm/scm/git/remote/url') == 'https://git.example.com/provisioner.git'
        assert project.dslValue('definition/cpsScm/scm/git/branch') == '*/main'
        assert Paths.file('Jenkinsfile').isFile()
    }

    @Test
    void theSeedJobMaySetTheRepository() {
        JobDslStub dsl = new JobDslStub()
        dsl.run(SEED, [PROVISIONER_REPO_URL: 'https://git.internal/infra/provisioner.git'])
        assert dsl.item('provisioner').dslValue('definition/cpsScm/scm/git/remote/url') == 'https://git.internal/infra/provisioner.git'
    }

    @Test
    void theTrainingPipelineAsksForGpusFromItsParameters() {
        PipelineHarness jenkins = new PipelineHarness()
        jenkins.params.putAll(GPUS: '2', MARKET: 'spot')
        jenkins.secrets['hf-token'] = 'hf_secret'
        jenkins.shHandler = jenkins.runner(RECORD)
        String script = seeded().item('provisioner-examples/train-model').dslValue('definition/cps/script')
        jenkins.runScript(script)

        assert jenkins.nodeLabels() == ['ec2 && vcpu=8 && mem=32G && "gpu=a10g:2" && disk=200 && timeout=4h && spot']
        assert jenkins.shScripts() == [
            'provisioner run --summary-json provisioner-summary.json --image pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime ' +
            '--timeout 4h --network bridge --env WANDB_MODE=offline --env HF_TOKEN --job team/app --build 7 \'--docker-args=--shm-size 8g\' ' +
            '-- python train.py --epochs 10']
        assert jenkins.log.last() == 'model trained in 3600 s for $0.61'
        assert jenkins.currentBuild.description == 'g5.2xlarge spot, 1h, $0.6100, peak mem 1.0 GiB'
    }

    @Test
    void theTrainingPipelineMovesToOnDemandAfterALostAgentWhenMarketIsAny() {
        PipelineHarness jenkins = new PipelineHarness()
        jenkins.params.putAll(GPUS: '1', MARKET: 'any')
        jenkins.secrets['hf-token'] = 'hf_secret'
        boolean lost = false
        jenkins.shHandler = { String s -> if (!lost) { lost = true; throw new AgentLost('spot') }; jenkins.runner(RECORD).call(s) }
        jenkins.runScript(Paths.file('job_dsl/pipelines/train-model.groovy').text)
        assert jenkins.nodeLabels() == ['ec2 && vcpu=8 && mem=32G && "gpu=a10g:1" && disk=200 && timeout=4h',
                                        'ec2 && vcpu=8 && mem=32G && "gpu=a10g:1" && disk=200 && timeout=4h && ondemand']
    }

    @Test
    void theBenchmarkPipelineStaysOnSpotSizedExactly() {
        PipelineHarness jenkins = new PipelineHarness()
        jenkins.secrets['results-store'] = 'bench:pw'
        jenkins.shHandler = jenkins.runner(RECORD)
        jenkins.runScript(Paths.file('job_dsl/pipelines/nightly-benchmark.groovy').text)
        assert jenkins.nodeLabels() == ['ec2 && vcpu=16 && mem=32 && arch=arm64 && timeout=2h && spot && exact']
        assert jenkins.stepCalls('retry')[0].count == 4
        assert jenkins.shScripts()[0] ==
            'provisioner run --summary-json provisioner-summary.json --image registry.example.com/bench:latest --timeout 2h ' +
            '--network bridge --env RESULTS_URL=s3://bench-results/nightly --env RESULTS_USER --env RESULTS_PASSWORD ' +
            '--job team/app --build 7 -- sh -c \'bench --suite nightly --upload "$RESULTS_URL"\''
    }

    @Test
    void theStubRejectsDslMethodsItDoesNotKnow() {
        File seed = File.createTempFile('seed', '.groovy')
        seed.deleteOnExit()
        seed.text = "job('x') { lable('ec2') }"
        try {
            new JobDslStub().run(seed)
            assert false: 'a misspelt DSL method must fail'
        } catch (MissingMethodException e) {
            assert e.method == 'lable'
        }
    }

    @Test
    void theStubRejectsTriggersDeprecatedInPipelineJobs() {
        File seed = File.createTempFile('seed', '.groovy')
        seed.deleteOnExit()
        seed.text = "pipelineJob('x') { triggers { cron('H 2 * * *') } }"
        try {
            new JobDslStub().run(seed)
            assert false: 'triggers {} in a pipelineJob is deprecated since Job DSL 1.77'
        } catch (IllegalArgumentException e) {
            assert e.message.contains('pipelineTriggers')
        }
    }
}
