import org.provisioner.ConfigCheck
import org.provisioner.RunCommand
import org.provisioner.RunConfig
import org.provisioner.RunSummary

/**
 * Runs a command in a container on an agent sized for it, retrying when the agent is lost, and
 * shows what the run used and cost in the build's description:
 *   runRemote(image: 'python:3.11', command: 'make test', vcpu: 8, mem: 16, timeout: '1h')
 * See runRemote.txt for every key. Returns the usage record (a Map), or null if none was written.
 */
Map call(Map userConfig = [:]) {
    def defaultConfig = [
        image: null,          // Docker image; null: the agent's configured default image
        command: null,        // required: a String (run with `sh -c`) or a List of arguments (run as given)
        // Requirements, rendered by remoteLabel into the agent's label (see remoteLabel.txt).
        managedAtom: 'ec2', labels: [], vcpu: null, mem: null, memory: null, gpu: null, accel: null, arch: null,
        disk: null, type: null, family: null, region: null,
        market: 'any',        // 'any', 'spot' or 'on-demand'
        timeout: null,        // the deadline: planned for in the label and enforced by the runner
        autotune: true,       // false adds `exact`
        retries: 2,           // extra attempts when the agent is lost (spot interruption, instance gone)
        ondemandAfter: 1,     // with market 'any': lost agents after which the label asks for on-demand
        env: [:],             // plain variables for the container: [NAME: 'value']
        credentials: [],      // ids (secret text -> variable named after the id) or maps, see runRemote.txt
        dockerArgs: [],       // extra `docker run`-style arguments for the runner
        network: null,        // the container's network; null: `provisioner run`'s default, none (no network).
                              // 'bridge' reaches the internet (downloads, uploads), 'host', or a network's name
        job: null,            // usage identity; null: env.JOB_NAME and env.BUILD_NUMBER
        build: null,
        summaryFile: 'provisioner-summary.json',  // where the runner writes the usage record
        description: true,    // add the run's instance, duration, cost and peak memory to the description
        executable: 'provisioner',
    ]
    List<String> problems = ConfigCheck.unknownKeys(userConfig, defaultConfig.keySet())
    Map config = defaultConfig << userConfig
    config.job = ConfigCheck.given(config.job) ? config.job : env.JOB_NAME
    config.build = ConfigCheck.given(config.build) ? config.build : env.BUILD_NUMBER
    problems += RunConfig.problems(config)
    // Fail before asking for an agent: a bad map must not cost an instance.
    if (problems) {
        error("runRemote: ${problems.join('; ')}")
    }

    int attempt = 0
    Map summary = null
    retry(count: RunConfig.attempts(config), conditions: [agent(), nonresumable()]) {
        attempt++
        String label = remoteLabel(RunConfig.labelSpec(config, attempt))
        if (attempt > 1) {
            echo "runRemote: agent lost; attempt ${attempt} on ${label}"
        }
        node(label) {
            summary = runOnAgent(config, attempt)
        }
    }
    return summary
}

// One attempt on the agent: run, report, then fail the build if the command failed.
Map runOnAgent(Map config, int attempt) {
    List<Map> credentials = RunConfig.credentials(config.credentials)
    String script = RunCommand.script(config, RunConfig.secretVariables(credentials))
    // An empty file marks "no record": a stale one from an earlier run must not be reported.
    writeFile(file: config.summaryFile, text: '')
    int status = 0
    if (credentials) {
        withCredentials(credentials.collect { bindingFor(it) }) {
            status = sh(script: script, returnStatus: true)
        }
    } else {
        status = sh(script: script, returnStatus: true)
    }
    Map summary = RunSummary.parse(readFile(config.summaryFile))
    report(summary, config, attempt)
    if (status != 0) {
        error(RunSummary.failure(status, summary))
    }
    return summary
}

void report(Map summary, Map config, int attempt) {
    if (summary == null) {
        echo "runRemote: no usage record in ${config.summaryFile}"
        return
    }
    if (summary.summary_line) {
        echo summary.summary_line
    }
    if (config.description) {
        currentBuild.description = RunSummary.append(currentBuild.description, RunSummary.describe(summary, attempt))
    }
}

def bindingFor(Map credential) {
    if (credential.type == 'usernamePassword') {
        return usernamePassword(credentialsId: credential.id, usernameVariable: credential.usernameVariable,
                                passwordVariable: credential.passwordVariable)
    }
    return string(credentialsId: credential.id, variable: credential.variable)
}
