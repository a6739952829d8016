package org.provisioner

import org.junit.Test

class RunCommandTest {
    static Map config(Map overrides = [:]) {
        [executable: 'provisioner', summaryFile: 'provisioner-summary.json', image: null, timeout: null,
         env: [:], job: null, build: null, dockerArgs: [], command: 'make test'] + overrides
    }

    @Test
    void shellQuotingRoundTripsThroughSh() {
        assert RunCommand.quote('plain-word_1.0/x:y@z') == 'plain-word_1.0/x:y@z'
        assert RunCommand.quote('') == "''"
        assert RunCommand.quote('a b') == "'a b'"
        assert RunCommand.quote("it's") == "'it'\"'\"'s'"
        // Ask a real shell: what it reads back must be exactly the words we quoted.
        List<String> words = ["it's", 'a b', '$HOME', '`id`', 'x;y', 'tab\tnew\nline', '*', '"q"']
        String script = 'printf "%s\\0" ' + words.collect { RunCommand.quote(it) }.join(' ')
        Process p = ['sh', '-c', script].execute()
        String out = p.inputStream.text
        assert p.waitFor() == 0
        assert out.split('\0') as List == words
    }

    @Test
    void theMinimalLineHasSummaryAndCommand() {
        assert RunCommand.script(config(), []) ==
            "provisioner run --summary-json provisioner-summary.json -- sh -c 'make test'"
    }

    @Test
    void optionsComeInTheDocumentedOrder() {
        Map c = config(image: 'python:3.11', timeout: '2H', env: [A: '1', B: 'two words'], job: 'team/app',
                       build: '42', dockerArgs: ['--shm-size', '2g'], command: ['python', '-c', 'print("hi")'])
        assert RunCommand.script(c, ['TOKEN']) ==
            "provisioner run --summary-json provisioner-summary.json --image python:3.11 --timeout 2h " +
            "--env A=1 --env 'B=two words' --env TOKEN --job team/app --build 42 " +
            "'--docker-args=--shm-size 2g' -- python -c 'print(\"hi\")'"
    }
}
