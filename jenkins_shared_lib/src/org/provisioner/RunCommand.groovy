package org.provisioner

import com.cloudbees.groovy.cps.NonCPS

/** The shell line runRemote runs on the agent: `provisioner run ... -- COMMAND...`. */
class RunCommand implements Serializable {
    // Words made only of these need no quotes (the same set as Python's shlex.quote).
    private static final String SAFE = /[A-Za-z0-9_@%+=:,.\/-]+/

    /** One shell word that the shell reads back as exactly `word`. */
    @NonCPS
    static String quote(Object word) {
        String text = String.valueOf(word)
        if (text ==~ SAFE) {
            return text
        }
        return "'" + text.replace("'", "'\"'\"'") + "'"
    }

    /**
     * The whole line for a validated config. `secrets` are variable names bound by withCredentials
     * on the agent: they are passed as a bare `--env NAME`, which the runner fills from its own
     * environment (docker's semantics), so their values never appear in Groovy, in this line or in
     * any process's arguments.
     */
    @NonCPS
    static String script(Map config, List<String> secrets) {
        List<String> words = [quote(config.executable), 'run', '--summary-json', quote(config.summaryFile)]
        if (ConfigCheck.given(config.image)) {
            words += ['--image', quote(config.image)]
        }
        if (ConfigCheck.given(config.timeout)) {
            words += ['--timeout', Units.duration(config.timeout)]
        }
        if (ConfigCheck.given(config.network)) {
            words += ['--network', quote(config.network)]
        }
        (config.env as Map).each { name, value -> words += ['--env', quote("${name}=${value}")] }
        secrets.each { String name -> words += ['--env', name] }
        if (ConfigCheck.given(config.job)) {
            words += ['--job', quote(config.job)]
        }
        if (ConfigCheck.given(config.build)) {
            words += ['--build', quote(config.build)]
        }
        if (config.dockerArgs) {
            // The runner takes extra docker parameters as one shell-split text: `--docker-args=TEXT`.
            String text = (config.dockerArgs as List).collect { quote(it) }.join(' ')
            words << quote("--docker-args=${text}")
        }
        words << '--'
        words += commandWords(config.command)
        return words.join(' ')
    }

    /** A String runs through `sh -c` in the container; a List is the container's argv as given. */
    @NonCPS
    static List<String> commandWords(Object command) {
        if (command instanceof List) {
            return command.collect { quote(it) }
        }
        return ['sh', '-c', quote(command.toString())]
    }
}
