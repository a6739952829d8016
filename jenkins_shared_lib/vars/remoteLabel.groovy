import org.provisioner.ConfigCheck
import org.provisioner.RemoteLabel

/**
 * The label expression that asks the provisioner daemon for a right-sized agent:
 *   node(remoteLabel(vcpu: 8, mem: '16G', market: 'spot')) { ... }
 * See remoteLabel.txt for every key; the rendering itself is org.provisioner.RemoteLabel.
 */
String call(Map userConfig = [:]) {
    def defaultConfig = [
        managedAtom: 'ec2',  // the atom the daemon watches for (its config's jenkins managed atom)
        labels: [],          // extra plain atoms, e.g. ['linux']; they carry no sizing meaning
        // Requirements; numbers mean "at least" (docs/contracts.md). Null or blank: not asked for.
        vcpu: null,          // whole vCPUs
        mem: null,           // 16 (GiB), '16G', '512Mi', '1.5GiB'
        memory: null,        // alias of mem
        gpu: null,           // NVIDIA GPUs (1), or a vendor/series/model ('radeon', 'a10g', 'nvidia:4')
        accel: null,         // Gaudi, Inferentia, Trainium: 'gaudi', 'inferentia2', 'trainium:16'
        arch: null,          // 'x86_64' or 'arm64'
        disk: null,          // GiB of root volume
        type: null,          // one instance type, e.g. 'm5.2xlarge'
        family: null,        // an instance family, e.g. 'c6g'
        region: null,        // e.g. 'us-east-1'
        timeout: null,       // the build's deadline for planning: 5400, '90m', '2h', '1h30m'
        market: 'any',       // 'any' lets the planner choose; 'spot' and 'on-demand' are hard
        autotune: true,      // false adds `exact`: vcpu and mem are kept as declared
    ]
    List<String> problems = ConfigCheck.unknownKeys(userConfig, defaultConfig.keySet())
    Map spec = defaultConfig << userConfig
    problems += RemoteLabel.problems(spec)
    if (problems) {
        error("remoteLabel: ${problems.join('; ')}")
    }
    return RemoteLabel.render(spec)
}
