package org.provisioner.steps

import org.junit.Test
import org.provisioner.harness.AgentLost
import org.provisioner.harness.PipelineError
import org.provisioner.harness.PipelineHarness

class RunRemoteStepTest {
    static final Map RECORD = [job: 'team/app', build: '7', run_id: 'r1', instance_type: 'm5.2xlarge', market: 'spot',
                               duration_s: 754, cost_usd: 0.04213, mem_max_bytes: 3435973837L, exit_code: 0,
                               summary_line: 'm5.2xlarge spot: 12m34s, $0.0421, mem max 3.2 GiB']
    final PipelineHarness jenkins = new PipelineHarness()

    static String expectFailure(Closure body) {
        try {
            body()
        } catch (PipelineError e) {
            return e.message
        }
        assert false: 'expected the step to fail'
        return null
    }

    @Test
    void asksForTheLabelRunsTheRunnerAndDescribesTheBuild() {
        jenkins.shHandler = jenkins.runner(RECORD)
        Map result = jenkins.call('runRemote', [image: 'python:3.11', command: 'make test', vcpu: 8, mem: '16G', timeout: '1h'])

        assert jenkins.nodeLabels() == ['ec2 && vcpu=8 && mem=16G && timeout=1h']
        assert jenkins.shScripts() == ["provisioner run --summary-json provisioner-summary.json --image python:3.11 " +
                                       "--timeout 1h --job team/app --build 7 -- sh -c 'make test'"]
        Map sh = jenkins.stepCalls('sh')[0]
        assert sh.node == 'agent-1' && sh.returnStatus == true
        assert jenkins.stepCalls('retry') == [[step: 'retry', node: null, stage: null, count: 3, conditions: ['agent', 'nonresumable']]]
        assert jenkins.currentBuild.description == 'm5.2xlarge spot, 12m34s, $0.0421, peak mem 3.2 GiB'
        assert jenkins.log == [RECORD.summary_line]
        assert result == RECORD
    }

    @Test
    void acceleratorsAreAskedForUnderAccelAndNeverUnderGpu() {
        jenkins.shHandler = jenkins.runner(RECORD + [instance_type: 'inf2.xlarge', gpu_count: 0])
        jenkins.call('runRemote', [command: 'python infer.py', accel: 'Inferentia2', market: 'spot'])
        assert jenkins.nodeLabels() == ['ec2 && accel=inferentia2 && spot']

        String message = expectFailure { jenkins.call('runRemote', [command: 'true', gpu: 'trainium:16']) }
        assert message == "runRemote: gpu names an accelerator, not a GPU: use accel: 'trainium:16'"
        assert jenkins.nodeLabels() == ['ec2 && accel=inferentia2 && spot']   // no agent asked for
    }

    @Test
    void theSummaryFileIsEmptiedOnTheAgentBeforeTheRun() {
        jenkins.shHandler = jenkins.runner(RECORD)
        jenkins.call('runRemote', [command: 'true'])
        List<String> order = jenkins.calls.findAll { it.step in ['writeFile', 'sh'] }.collect { "${it.step}@${it.node}".toString() }
        assert order == ['writeFile@agent-1', 'sh@agent-1']
        assert jenkins.stepCalls('writeFile')[0].subMap(['file', 'text']) == [file: 'provisioner-summary.json', text: '']
    }

    @Test
    void withMarketAnyALostAgentIsRetriedOnDemand() {
        int runs = 0
        jenkins.shHandler = { String script ->
            if (++runs == 1) {
                throw new AgentLost('Agent agent-1 was removed: spot interruption')
            }
            return jenkins.runner(RECORD + [market: 'on-demand']).call(script)
        }
        jenkins.call('runRemote', [command: 'true', vcpu: 4])

        assert jenkins.nodeLabels() == ['ec2 && vcpu=4', 'ec2 && vcpu=4 && ondemand']
        assert jenkins.stepCalls('sh')*.node == ['agent-1', 'agent-2']
        assert jenkins.log.contains('runRemote: agent lost; attempt 2 on ec2 && vcpu=4 && ondemand')
        assert jenkins.currentBuild.description == 'm5.2xlarge on-demand, 12m34s, $0.0421, peak mem 3.2 GiB, after 1 lost agent'
    }

    @Test
    void spotStaysSpotAcrossLostAgents() {
        int runs = 0
        jenkins.shHandler = { String script ->
            if (++runs < 3) {
                throw new AgentLost('gone')
            }
            return jenkins.runner(RECORD).call(script)
        }
        jenkins.call('runRemote', [command: 'true', market: 'spot', ondemandAfter: 1])
        assert jenkins.nodeLabels() == ['ec2 && spot'] * 3
    }

    @Test
    void givesUpWhenTheRetriesAreSpent() {
        jenkins.shHandler = { String script -> throw new AgentLost('gone') }
        try {
            jenkins.call('runRemote', [command: 'true', retries: 1, ondemandAfter: 5])
            assert false: 'expected the agent loss to fail the build'
        } catch (AgentLost expected) {
            assert jenkins.nodeLabels() == ['ec2', 'ec2']
        }
    }

    @Test
    void aFailingCommandIsNotRetriedAndStillShowsItsCost() {
        jenkins.shHandler = jenkins.runner(RECORD + [exit_code: 137, oom_killed: true, summary_line: 'OOM at 3.2 GiB'], 137)
        String message = expectFailure { jenkins.call('runRemote', [command: 'true']) }
        assert message == 'runRemote: provisioner run exited with 137 (out of memory): OOM at 3.2 GiB'
        assert jenkins.nodeLabels().size() == 1
        assert jenkins.currentBuild.description.startsWith('m5.2xlarge spot, 12m34s')
    }

    @Test
    void noRecordMeansNoDescription() {
        jenkins.shHandler = jenkins.runner(null, 125)
        String message = expectFailure { jenkins.call('runRemote', [command: 'true']) }
        assert message == 'runRemote: provisioner run exited with 125 (failed before the job ran: image, Docker engine or launch)'
        assert jenkins.log == ['runRemote: no usage record in provisioner-summary.json']
        assert jenkins.currentBuild.description == null
    }

    @Test
    void credentialsAreBoundAndForwardedByNameNeverByValue() {
        jenkins.secrets['npm-token'] = "s3cr3t 'npm\" \$token"
        jenkins.secrets['registry'] = 'bob:hunter2'
        Map seenEnv = null
        jenkins.shHandler = { String script -> seenEnv = new HashMap(jenkins.env); jenkins.runner(RECORD).call(script) }
        jenkins.call('runRemote', [command: 'npm publish', credentials: ['npm-token',
            [id: 'registry', type: 'usernamePassword', usernameVariable: 'REG_USER', passwordVariable: 'REG_PASS']]])

        assert jenkins.stepCalls('withCredentials')[0].bindings == [
            [$class: 'StringBinding', credentialsId: 'npm-token', variable: 'NPM_TOKEN'],
            [$class: 'UsernamePasswordMultiBinding', credentialsId: 'registry', usernameVariable: 'REG_USER', passwordVariable: 'REG_PASS']]
        assert jenkins.shScripts()[0].contains(' --env NPM_TOKEN --env REG_USER --env REG_PASS --job ')
        assert seenEnv.NPM_TOKEN == jenkins.secrets['npm-token'] && seenEnv.REG_PASS == 'hunter2'
        ['s3cr3t', 'hunter2'].each { assert !jenkins.everythingSeen().contains(it) }
        assert !jenkins.env.containsKey('NPM_TOKEN')
    }

    @Test
    void theShellGivesTheRunnerExactlyTheIntendedArguments() {
        String secret = "s3cr3t 'x\" \$y `id`"
        jenkins.secrets['tok'] = secret
        jenkins.shHandler = jenkins.runner(RECORD)
        jenkins.call('runRemote', [command: ['python', '-c', 'print("it\'s")'], env: [GREETING: 'hello world'],
                                   credentials: ['tok'], dockerArgs: ['--label', 'team=ml ops'], job: 'a b', build: "7'"])
        // Run the line in a real shell with the runner swapped for printf, the secret in its environment.
        String line = jenkins.shScripts()[0]
        assert line.startsWith('provisioner run ')
        assert !line.contains('s3cr3t')
        ProcessBuilder pb = new ProcessBuilder('sh', '-c', "printf '%s\\0' " + line.substring('provisioner '.length()))
        pb.environment().put('TOK', secret)
        Process p = pb.start()
        List<String> argv = p.inputStream.text.split('\0') as List
        assert p.waitFor() == 0
        assert argv == ['run', '--summary-json', 'provisioner-summary.json', '--env', 'GREETING=hello world',
                        '--env', 'TOK', '--job', 'a b', '--build', "7'", "--docker-args=--label 'team=ml ops'",
                        '--', 'python', '-c', 'print("it\'s")']
        // The runner shell-splits --docker-args (Python's shlex): check it gets the two words back.
        Process split = ['python3', '-c', 'import shlex,sys; print(shlex.split(sys.argv[1]))', argv[11] - '--docker-args='].execute()
        assert split.inputStream.text.trim() == "['--label', 'team=ml ops']"
    }

    @Test
    void badMapsFailBeforeAnyAgentIsRequested() {
        String message = expectFailure { jenkins.call('runRemote', [command: 'true', cpus: 4, vcpu: 0, market: 'cheap', timeout: '2 days']) }
        assert message.startsWith("runRemote: unknown key 'cpus' (known keys: accel, arch, autotune, build, command,")
        ['vcpu must be a whole number', 'market must be one of any, spot, on-demand', 'timeout must be seconds'].each {
            assert message.contains(it)
        }
        assert jenkins.calls*.step == ['error']
    }

    @Test
    void theNetworkIsPassedWhenGivenAndRunsDefaultOtherwise() {
        jenkins.shHandler = jenkins.runner(RECORD)
        jenkins.call('runRemote', [command: 'pip download torch', network: 'bridge'])
        jenkins.call('runRemote', [command: 'true', network: 'ci-net.1'])
        jenkins.call('runRemote', [command: 'true'])
        assert jenkins.shScripts() == [
            "provisioner run --summary-json provisioner-summary.json --network bridge --job team/app --build 7 -- sh -c 'pip download torch'",
            "provisioner run --summary-json provisioner-summary.json --network ci-net.1 --job team/app --build 7 -- sh -c true",
            "provisioner run --summary-json provisioner-summary.json --job team/app --build 7 -- sh -c true"]
    }

    @Test
    void aBadNetworkFailsBeforeAnyAgentIsRequested() {
        ['bridge; curl evil', '', '-host', 42].each { bad ->
            PipelineHarness fresh = new PipelineHarness()
            String message = expectFailure { fresh.call('runRemote', [command: 'true', network: bad]) }
            assert message.contains("network must be 'none', 'bridge', 'host' or a network's name, got '${bad}'")
            assert fresh.nodeLabels().isEmpty()
        }
    }

    @Test
    void aCommandIsRequired() {
        assert expectFailure { jenkins.call('runRemote', [vcpu: 2]) } ==
            'runRemote: command is required: a shell command (String) or a list of arguments'
        assert jenkins.nodeLabels().isEmpty()
    }

    @Test
    void identityFallsBackToTheBuildAndCanBeOverridden() {
        jenkins.shHandler = jenkins.runner(RECORD)
        jenkins.call('runRemote', [command: 'true', job: 'nightly', build: 'r-12'])
        jenkins.env.remove('JOB_NAME')
        jenkins.env.remove('BUILD_NUMBER')
        jenkins.call('runRemote', [command: 'true'])
        assert jenkins.shScripts() == [
            "provisioner run --summary-json provisioner-summary.json --job nightly --build r-12 -- sh -c true",
            "provisioner run --summary-json provisioner-summary.json -- sh -c true"]
    }

    @Test
    void severalRunsEachAddALineUnlessTurnedOff() {
        jenkins.shHandler = jenkins.runner(RECORD)
        jenkins.call('runRemote', [command: 'true'])
        jenkins.call('runRemote', [command: 'true', description: false])
        jenkins.shHandler = jenkins.runner(RECORD + [instance_type: 'c6g.large', market: null])
        jenkins.call('runRemote', [command: 'true'])
        assert jenkins.currentBuild.description.readLines() == [
            'm5.2xlarge spot, 12m34s, $0.0421, peak mem 3.2 GiB', 'c6g.large, 12m34s, $0.0421, peak mem 3.2 GiB']
    }

    @Test
    void requirementsAndAutotuneReachTheLabel() {
        jenkins.shHandler = jenkins.runner(RECORD)
        jenkins.call('runRemote', [command: 'train', gpu: 'A10G:4', arch: 'x86_64', disk: 100, autotune: false,
                                   labels: ['linux'], managedAtom: 'aws', market: 'on-demand'])
        assert jenkins.nodeLabels() == ['aws && linux && "gpu=a10g:4" && arch=x86_64 && disk=100 && ondemand && exact']
    }
}
