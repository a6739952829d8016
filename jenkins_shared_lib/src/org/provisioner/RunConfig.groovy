package org.provisioner

import com.cloudbees.groovy.cps.NonCPS

/**
 * Validation and derived values of runRemote's merged configuration. The defaults themselves are
 * in vars/runRemote.groovy, where a reader of the step looks for them.
 */
class RunConfig implements Serializable {
    private static final String ENV_NAME = /[A-Za-z_][A-Za-z0-9_]*/
    private static final String NETWORK = /[A-Za-z0-9][A-Za-z0-9_.-]{0,127}/
    private static final List<String> CREDENTIAL_KEYS = ['id', 'type', 'variable', 'usernameVariable', 'passwordVariable']

    /** Every problem with `config` (label keys included), each starting with the key's name. */
    @NonCPS
    static List<String> problems(Map config) {
        List<String> out = RemoteLabel.problems(labelSpec(config, 1))
        Map<String, Closure> checks = [
            command: { checkCommand(it) },
            image: { checkWord(it, 'an image name without blanks') },
            retries: { checkWhole(it, 0) },
            ondemandAfter: { checkWhole(it, 1) },
            env: { checkEnv(it) },
            credentials: { credentials(it) },
            dockerArgs: { checkStrings(it) },
            network: { checkNetwork(it) },
            summaryFile: { checkWord(it, 'a file path without blanks'); if (!ConfigCheck.given(it)) throw new IllegalArgumentException('is required') },
            executable: { checkWord(it, 'a command without blanks'); if (!ConfigCheck.given(it)) throw new IllegalArgumentException('is required') },
            description: { if (!(it instanceof Boolean)) throw new IllegalArgumentException("must be true or false, got '${it}'") },
        ]
        checks.each { String key, Closure check ->
            try {
                check(config[key])
            } catch (IllegalArgumentException e) {
                out << "${key} ${e.message}".toString()
            }
        }
        if (!out) {
            out.addAll(clashes(config))
        }
        return out
    }

    /** Attempts in all: the first plus `retries` after lost agents. */
    @NonCPS
    static int attempts(Map config) {
        return (int) Units.wholeNumber(config.retries) + 1
    }

    /**
     * The remoteLabel map for attempt `attempt` (1 = the first). With market 'any', once
     * `ondemandAfter` agents have been lost the label asks for on-demand: losing an agent is
     * most often a spot interruption, and a second one costs more than the on-demand premium.
     * An explicit 'spot' stays spot (docs/contracts.md: market atoms are hard).
     */
    @NonCPS
    static Map labelSpec(Map config, int attempt) {
        Map spec = [:]
        for (String key : RemoteLabel.KEYS) {
            if (config.containsKey(key)) {
                spec[key] = config[key]
            }
        }
        Long after = Units.wholeNumber(config.ondemandAfter)
        boolean any = RemoteLabel.normaliseMarket(config.market) == 'any'
        if (any && after != null && attempt - 1 >= after) {
            spec.market = 'on-demand'
        }
        return spec
    }

    /**
     * Credentials as [type, id, variable] or [type, id, usernameVariable, passwordVariable].
     * A bare id binds a secret text to a variable named after it: 'npm-token' -> NPM_TOKEN.
     */
    @NonCPS
    static List<Map> credentials(Object value) {
        if (value == null) {
            return []
        }
        if (!(value instanceof List)) {
            throw new IllegalArgumentException("must be a list of credential ids or maps, got '${value}'")
        }
        return value.collect { item -> credential(item) }
    }

    /** The environment variable names the credentials bind, in order. */
    @NonCPS
    static List<String> secretVariables(List<Map> credentials) {
        return credentials.collectMany { Map c ->
            c.type == 'usernamePassword' ? [c.usernameVariable, c.passwordVariable] : [c.variable]
        }
    }

    @NonCPS
    private static Map credential(Object item) {
        if (item instanceof CharSequence && ConfigCheck.given(item)) {
            String id = item.toString().trim()
            return [type: 'string', id: id, variable: variableFor(id)]
        }
        if (!(item instanceof Map)) {
            throw new IllegalArgumentException("must hold credential ids or maps with an id, got '${item}'")
        }
        List<String> unknown = ConfigCheck.unknownKeys(item, CREDENTIAL_KEYS)
        if (unknown) {
            throw new IllegalArgumentException(unknown.join('; '))
        }
        if (!ConfigCheck.given(item.id)) {
            throw new IllegalArgumentException("entry has no id: ${item.keySet()}")
        }
        String id = item.id.toString().trim()
        String type = item.type ?: 'string'
        if (type == 'string') {
            return [type: type, id: id, variable: envName(item.variable ?: variableFor(id), id)]
        }
        if (type == 'usernamePassword') {
            return [type: type, id: id, usernameVariable: envName(item.usernameVariable, id),
                    passwordVariable: envName(item.passwordVariable, id)]
        }
        throw new IllegalArgumentException("'${id}' has type '${type}': use string or usernamePassword")
    }

    @NonCPS
    private static String variableFor(String id) {
        String name = id.toUpperCase().replaceAll(/[^A-Z0-9_]/, '_')
        return name ==~ /[0-9].*/ ? "_${name}".toString() : name
    }

    @NonCPS
    private static String envName(Object name, String id) {
        if (!(String.valueOf(name) ==~ ENV_NAME)) {
            throw new IllegalArgumentException("'${id}' needs a variable name such as MY_TOKEN, got '${name}'")
        }
        return name.toString()
    }

    @NonCPS
    private static void checkCommand(Object command) {
        boolean ok = command instanceof List ? command && command.every { it != null } : ConfigCheck.given(command)
        if (!ok) {
            throw new IllegalArgumentException('is required: a shell command (String) or a list of arguments')
        }
    }

    @NonCPS
    private static void checkWord(Object value, String what) {
        if (ConfigCheck.given(value) && !(value instanceof CharSequence && !(value ==~ /.*\s.*/))) {
            throw new IllegalArgumentException("must be ${what}, got '${value}'")
        }
    }

    @NonCPS
    private static void checkWhole(Object value, long least) {
        Long number = Units.wholeNumber(value)
        if (number == null || number < least) {
            throw new IllegalArgumentException("must be a whole number of at least ${least}, got '${value}'")
        }
    }

    @NonCPS
    private static void checkEnv(Object env) {
        if (!(env instanceof Map)) {
            throw new IllegalArgumentException("must be a map of variable names to values, got '${env}'")
        }
        env.each { name, value ->
            if (!(String.valueOf(name) ==~ ENV_NAME) || value == null) {
                throw new IllegalArgumentException("entry '${name}' needs a variable name such as FOO and a value")
            }
        }
    }

    @NonCPS
    private static void checkStrings(Object value) {
        if (!(value instanceof List) || value.any { !(it instanceof CharSequence) }) {
            throw new IllegalArgumentException("must be a list of strings, got '${value}'")
        }
    }

    // A plain env entry with a credential's name would silently shadow the secret.
    @NonCPS
    private static List<String> clashes(Map config) {
        Set<String> plain = (config.env as Map).keySet().collect { it.toString() } as Set
        List<String> shared = secretVariables(credentials(config.credentials)).findAll { plain.contains(it) }
        return shared.collect { "env ${it} is also bound by credentials: drop one of them".toString() }
    }

    /** Docker's network modes and network names: none, bridge, host, or a name such as ci-net. */
    @NonCPS
    static void checkNetwork(Object value) {
        if (value != null && !(value instanceof CharSequence && value.toString() ==~ NETWORK)) {
            throw new IllegalArgumentException("must be 'none', 'bridge', 'host' or a network's name, got '${value}'")
        }
    }
}
