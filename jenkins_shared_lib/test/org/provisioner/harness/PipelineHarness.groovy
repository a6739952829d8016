package org.provisioner.harness

import groovy.json.JsonOutput
import org.codehaus.groovy.runtime.InvokerHelper

/**
 * A small stand-in for a Jenkins controller: pipeline steps as closures in a Binding, the
 * library's vars/ loaded as global variables, and every step call recorded in order so that
 * tests can assert the exact labels, shell lines and build description.
 *
 * Agents: each node() gets a fresh empty workspace, so files written on a lost agent are gone,
 * as they would be. `sh` is answered by `shHandler`, which tests replace (see runner()).
 */
class PipelineHarness {
    // Scripts compile once per JVM; each harness instantiates them with its own binding.
    private static final Map<String, Class> COMPILED = [:]
    private static final GroovyShell COMPILER = new GroovyShell(PipelineHarness.classLoader)

    final Binding binding = new Binding()
    final List<Map> calls = []
    final List<String> log = []
    final Map<String, String> env = [JOB_NAME: 'team/app', BUILD_NUMBER: '7']
    final FakeBuild currentBuild = new FakeBuild()
    final Map<String, String> secrets = [:]
    final Map<String, Object> params = [:]
    Closure shHandler = { String script -> 0 }

    private final Map<String, Map<String, String>> workspaces = [:]
    private String node = null
    private String stage = null

    PipelineHarness() {
        binding.setVariable('env', env)
        binding.setVariable('currentBuild', currentBuild)
        binding.setVariable('params', params)
        binding.setVariable('scm', [$class: 'GitSCM'])
        registerSteps()
        Paths.lib().listFiles().find { it.name == 'vars' }.listFiles()
            .findAll { it.name.endsWith('.groovy') }
            .each { File f -> registerVar(f.name - '.groovy', f) }
    }

    /** Runs a pipeline script (a Jenkinsfile, a job's script) against these steps. */
    Object runScript(File file) {
        return script(file).run()
    }

    /** Runs pipeline script text, such as a job's inline script. */
    Object runScript(String text) {
        Class compiled = COMPILED[text]
        if (compiled == null) {
            compiled = COMPILER.parse(text).getClass()
            COMPILED[text] = compiled
        }
        return InvokerHelper.createScript(compiled, binding).run()
    }

    /** Runs one of the library's steps as a pipeline would: `runRemote(...)`. */
    Object call(String step, Map args) {
        return (binding.getVariable(step) as Closure).call(args)
    }

    // ---- what tests read ------------------------------------------------------------------

    List<Map> stepCalls(String step) { calls.findAll { it.step == step } }

    List<String> shScripts() { stepCalls('sh').collect { it.script as String } }

    List<String> nodeLabels() { stepCalls('node').collect { it.label as String } }

    List<String> stages() { stepCalls('stage').collect { it.name as String } }

    /** Every string any step received or logged: a secret must appear in none of them. */
    String everythingSeen() { JsonOutput.toJson([calls: calls, log: log, description: currentBuild.description]) }

    /** An sh handler that acts like `provisioner run`: writes `record` as the summary and exits with `status`. */
    Closure runner(Map record, int status = 0) {
        return { String script ->
            def path = (script =~ /--summary-json (\S+)/)
            if (path.find() && record != null) {
                workspace()[unquote(path.group(1))] = JsonOutput.toJson(record)
            }
            return status
        }
    }

    Map<String, String> workspace() {
        if (node == null) {
            throw new StepFailure('Required context class hudson.FilePath is missing: this step must run inside node')
        }
        return workspaces[node]
    }

    // ---- stubs ----------------------------------------------------------------------------

    private void registerSteps() {
        step('sh') { Object arg -> sh(arg instanceof Map ? arg : [script: arg]) }
        step('echo') { Object message -> record('echo', [message: message.toString()]); log << message.toString() }
        step('error') { Object message -> record('error', [message: message.toString()]); throw new PipelineError(message.toString()) }
        step('node') { Object a, Object b = null -> b == null ? onNode(null, a as Closure) : onNode(a as String, b as Closure) }
        step('retry') { Object spec, Closure body -> retry(spec, body) }
        step('agent') { -> 'agent' }
        step('nonresumable') { -> 'nonresumable' }
        step('stage') { String name, Closure body -> onStage(name, body) }
        step('withCredentials') { List bindings, Closure body -> withCredentials(bindings, body) }
        step('string') { Map args -> [$class: 'StringBinding'] + args }
        step('usernamePassword') { Map args -> [$class: 'UsernamePasswordMultiBinding'] + args }
        step('writeFile') { Map args -> record('writeFile', args); workspace()[args.file as String] = args.text as String }
        step('readFile') { Object arg -> readFile(arg instanceof Map ? arg.file as String : arg as String) }
        step('fileExists') { String path -> workspace().containsKey(path) }
        step('checkout') { Object scm -> workspace(); record('checkout', [scm: scm]) }
        step('junit') { Object args -> workspace(); record('junit', args instanceof Map ? args : [testResults: args]) }
        step('archiveArtifacts') { Object args -> workspace(); record('archiveArtifacts', args instanceof Map ? args : [artifacts: args]) }
        step('timeout') { Map args, Closure body -> record('timeout', args); body() }
    }

    private void step(String name, Closure body) {
        binding.setVariable(name, body)
    }

    private void registerVar(String name, File file) {
        Script var = script(file)
        binding.setVariable(name, { Map args = [:] -> var.invokeMethod('call', args) })
    }

    private Script script(File file) {
        Class compiled = COMPILED[file.path]
        if (compiled == null) {
            compiled = COMPILER.parse(file).getClass()
            COMPILED[file.path] = compiled
        }
        return InvokerHelper.createScript(compiled, binding)
    }

    private void record(String step, Map args) {
        calls << ([step: step, node: node, stage: stage] + args)
    }

    private Object sh(Map args) {
        workspace()
        record('sh', args)
        def answer = shHandler.call(args.script as String)
        int status = answer instanceof Map ? answer.status as int : answer as int
        if (args.returnStatus) {
            return status
        }
        if (status != 0) {
            throw new StepFailure("script returned exit code ${status}")
        }
        return args.returnStdout ? (answer instanceof Map ? answer.stdout : '') : null
    }

    private String readFile(String path) {
        String text = workspace()[path]
        if (text == null) {
            throw new StepFailure("java.nio.file.NoSuchFileException: ${path}")
        }
        return text
    }

    private Object onNode(String label, Closure body) {
        String previous = node
        node = "agent-${stepCalls('node').size() + 1}".toString()
        workspaces[node] = [:]
        record('node', [label: label, name: node])
        env.NODE_NAME = node
        try {
            return body()
        } finally {
            node = previous
            env.NODE_NAME = previous
        }
    }

    private Object onStage(String name, Closure body) {
        record('stage', [name: name])
        String previous = stage
        stage = name
        try {
            return body()
        } finally {
            stage = previous
        }
    }

    // Like Jenkins: with conditions, only failures they match are retried; without, any failure.
    private Object retry(Object spec, Closure body) {
        int count = spec instanceof Map ? spec.count as int : spec as int
        List conditions = spec instanceof Map ? (spec.conditions ?: []) as List : []
        record('retry', [count: count, conditions: conditions])
        for (int attempt = 1; ; attempt++) {
            try {
                return body()
            } catch (Throwable e) {
                boolean matches = conditions ? (e instanceof AgentLost && conditions.contains('agent')) : !(e instanceof AgentLost)
                if (!matches || attempt >= count) {
                    throw e
                }
                log << "Retrying after: ${e.message}".toString()
            }
        }
    }

    // Binds each credential's variables to its secret for the body only, as Jenkins does.
    private Object withCredentials(List bindings, Closure body) {
        record('withCredentials', [bindings: bindings])
        Map<String, String> bound = [:]
        bindings.each { Map b ->
            String secret = secrets[b.credentialsId as String]
            if (secret == null) {
                throw new StepFailure("Could not find credentials entry with ID '${b.credentialsId}'")
            }
            if (b.variable) {
                bound[b.variable as String] = secret
            } else {
                bound[b.usernameVariable as String] = secret.split(':', 2)[0]
                bound[b.passwordVariable as String] = secret.split(':', 2)[1]
            }
        }
        env.putAll(bound)
        try {
            return body()
        } finally {
            bound.keySet().each { env.remove(it) }
        }
    }

    private static String unquote(String word) {
        return word.startsWith("'") ? word[1..-2].replace("'\"'\"'", "'") : word
    }
}
