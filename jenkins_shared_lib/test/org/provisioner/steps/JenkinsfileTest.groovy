package org.provisioner.steps

import org.junit.Test
import org.provisioner.harness.AgentLost
import org.provisioner.harness.Paths
import org.provisioner.harness.PipelineHarness
import org.provisioner.harness.StepFailure

/** The project's own Jenkinsfile, run against the stub harness. */
class JenkinsfileTest {
    static final File JENKINSFILE = Paths.file('Jenkinsfile')
    static final String LABEL = 'ec2 && vcpu=4 && mem=8 && disk=40 && timeout=1h'
    static final List<List<String>> STAGE_COMMANDS = [
        ['Lint', 'python3 -m venv .venv-lint && .venv-lint/bin/pip install -q pyflakes'],
        ['Lint', '.venv-lint/bin/python -m pyflakes provisioner/'],
        ['Python tests', 'scripts/in-build-container scripts/test --junitxml=build/test-results/pytest.xml'],
        ['Groovy tests', 'scripts/in-build-container scripts/test-groovy'],
        ['Package', 'scripts/in-build-container .venv/bin/python -m pip wheel --no-deps -w dist .'],
    ]

    final PipelineHarness jenkins = new PipelineHarness()

    @Test
    void stagesRunTheirCommandsOnTheLabelledAgent() {
        jenkins.runScript(JENKINSFILE)

        assert jenkins.nodeLabels() == [LABEL]
        assert jenkins.stages() == ['Lint', 'Python tests', 'Groovy tests', 'Package']
        assert jenkins.stepCalls('sh').collect { [it.stage, it.script] } == STAGE_COMMANDS
        assert jenkins.stepCalls('sh')*.node.unique() == ['agent-1']
        assert jenkins.stepCalls('retry')[0].conditions == ['agent', 'nonresumable']
        assert jenkins.stepCalls('timeout')[0].subMap(['time', 'unit']) == [time: 1, unit: 'HOURS']
        // The checkout comes first, on the agent; the reports are collected in their stages.
        assert jenkins.calls.find { it.step in ['checkout', 'sh'] }.step == 'checkout'
        assert jenkins.stepCalls('junit')[0].subMap(['stage', 'testResults', 'allowEmptyResults']) ==
            [stage: 'Python tests', testResults: 'build/test-results/*.xml', allowEmptyResults: true]
        assert jenkins.stepCalls('archiveArtifacts')[0].subMap(['stage', 'artifacts']) == [stage: 'Package', artifacts: 'dist/*.whl']
    }

    @Test
    void failingPythonTestsStopThePipelineButTheirReportIsKept() {
        jenkins.shHandler = { String script -> script.contains('scripts/test ') ? 1 : 0 }
        try {
            jenkins.runScript(JENKINSFILE)
            assert false: 'expected the build to fail'
        } catch (StepFailure e) {
            assert e.message == 'script returned exit code 1'
        }
        assert jenkins.stages() == ['Lint', 'Python tests']
        assert jenkins.stepCalls('junit').size() == 1
        assert jenkins.nodeLabels().size() == 1
    }

    @Test
    void aLostAgentRerunsThePipelineOnANewOne() {
        boolean lost = false
        jenkins.shHandler = { String script ->
            if (script.endsWith('scripts/test-groovy') && !lost) {
                lost = true
                throw new AgentLost('agent-1 was terminated')
            }
            return 0
        }
        jenkins.runScript(JENKINSFILE)
        assert jenkins.nodeLabels() == [LABEL, LABEL]
        assert jenkins.stepCalls('sh').findAll { it.node == 'agent-2' }*.script == STAGE_COMMANDS*.getAt(1)
    }

    @Test
    void theCommandsItRunsExistInThisRepository() {
        assert Paths.file('scripts/test').canExecute()
        assert Paths.file('scripts/test-groovy').canExecute()
        assert Paths.file('scripts/in-build-container').canExecute()
        assert Paths.file('jenkins_shared_lib/test/run').canExecute()
        assert Paths.file('provisioner').isDirectory()
        assert new File(Paths.root(), 'setup.cfg').text.contains('[options.extras_require]')
    }
}
