package org.provisioner.harness

/**
 * A small stand-in for the Job DSL plugin: runs a seed script and records the items it creates
 * as trees of DslNode. Only the DSL methods our seeds use are known; any other call fails, as a
 * misspelt one would on a controller.
 */
class JobDslStub {
    static final Set<String> KNOWN = [
        'displayName', 'description', 'label', 'logRotator', 'numToKeep', 'daysToKeep',
        'parameters', 'stringParam', 'choiceParam', 'booleanParam',
        'triggers', 'cron', 'scm', 'git', 'remote', 'url', 'credentials', 'branch',
        'steps', 'shell', 'wrappers', 'timestamps', 'credentialsBinding', 'string',
        'publishers', 'archiveArtifacts', 'pattern', 'allowEmpty',
        'definition', 'cps', 'script', 'sandbox', 'cpsScm', 'scriptPath', 'lightweight',
        'properties', 'disableConcurrentBuilds', 'pipelineTriggers', 'spec',
    ] as Set
    /** Calls Job DSL deprecates directly inside an item of this type (name -> the replacement). */
    static final Map<String, Map<String, String>> DEPRECATED = [
        pipelineJob: [triggers: 'properties { pipelineTriggers { triggers { ... } } } (deprecated since Job DSL 1.77)'],
    ]
    static final List<String> ITEM_TYPES = ['folder', 'job', 'freestyleJob', 'pipelineJob']

    /** Created items by full name, in creation order. */
    final Map<String, DslNode> items = [:]

    /** Runs a seed script; `variables` are what the seed job passes (its environment, parameters). */
    void run(File seed, Map<String, Object> variables = [:]) {
        Binding binding = new Binding(new LinkedHashMap(variables))
        ITEM_TYPES.each { String type ->
            binding.setVariable(type, { String name, Closure body = null -> create(type, name, body) })
        }
        binding.setVariable('readFileFromWorkspace', { String path -> Paths.file(path).text })
        new GroovyShell(binding).evaluate(seed)
    }

    DslNode item(String name) {
        DslNode found = items[name]
        assert found != null: "no item ${name}; created: ${items.keySet()}"
        return found
    }

    private DslNode create(String type, String name, Closure body) {
        String parent = name.contains('/') ? name.substring(0, name.lastIndexOf('/')) : null
        if (parent != null && items[parent]?.dslName != 'folder') {
            throw new IllegalArgumentException("Could not create item ${name}: no folder ${parent}")
        }
        DslNode node = new DslNode(type, [name])
        items[name] = node
        node.apply(body)
        return node
    }
}

/** One DSL call and the calls made in its closure. */
class DslNode {
    final String dslName
    final List dslArgs
    final List<DslNode> dslChildren = []

    DslNode(String name, List args) {
        dslName = name
        dslArgs = args
    }

    /** The first argument of the call at `path` ('definition/cps/script'), or null. */
    Object dslValue(String path) {
        DslNode node = this
        for (String part : path.tokenize('/')) {
            node = node?.dslChildren?.find { it.dslName == part }
        }
        return node?.dslArgs?.getAt(0)
    }

    /** Every call named `name` below this one, depth first. */
    List<DslNode> dslAll(String name) {
        dslChildren.collectMany { DslNode c -> (c.dslName == name ? [c] : []) + c.dslAll(name) }
    }

    void apply(Closure body) {
        if (body != null) {
            Closure copy = body.rehydrate(this, body.owner, body.thisObject)
            copy.resolveStrategy = Closure.DELEGATE_FIRST
            copy.call()
        }
    }

    def methodMissing(String name, Object args) {
        Object[] all = args as Object[]
        if (!JobDslStub.KNOWN.contains(name)) {
            throw new MissingMethodException(name, DslNode, all)
        }
        String replacement = JobDslStub.DEPRECATED[dslName]?.get(name)
        if (replacement != null) {
            throw new IllegalArgumentException("${dslName} ${dslArgs[0]}: ${name} {} is deprecated, use ${replacement}")
        }
        DslNode child = new DslNode(name, all.findAll { !(it instanceof Closure) } as List)
        dslChildren << child
        child.apply(all.find { it instanceof Closure } as Closure)
        return child
    }
}
