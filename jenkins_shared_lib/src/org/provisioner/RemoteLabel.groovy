package org.provisioner

import com.cloudbees.groovy.cps.NonCPS

/**
 * Renders a requirements map as the label expression that the provisioner daemon reads
 * (docs/labels.md; parsed by provisioner/requirements.py).
 *
 * Format: the managed atom, extra plain atoms, then vcpu, mem, gpu, accel, arch, disk, type,
 * family, region, timeout (each only when given), the market atom, then `exact`; joined with ' && '.
 * `gpu` is a count of NVIDIA GPUs or a GPU's vendor, series or model; Gaudi, Inferentia and
 * Trainium are accelerators under `accel`, never `gpu` (both checked here as in Python).
 * The order is fixed so that the same map always gives the same label, which the Python test
 * vectors (tests/vectors/labels.json) pin down.
 */
class RemoteLabel implements Serializable {
    /** Every key a label map may hold; `memory` is an alias of `mem`. */
    static final List<String> KEYS = ['managedAtom', 'labels', 'vcpu', 'mem', 'memory', 'gpu', 'accel', 'arch',
                                      'disk', 'type', 'family', 'region', 'timeout', 'market', 'autotune']
    static final List<String> MARKETS = ['any', 'spot', 'on-demand']
    /** The daemon's default managed atom (its config `jenkins.managed_atom`). */
    static final String DEFAULT_MANAGED_ATOM = 'ec2'
    // Both spellings of the architectures reach people's Jenkinsfiles; the label has one.
    private static final Map<String, String> ARCH = [x86_64: 'x86_64', amd64: 'x86_64', arm64: 'arm64', aarch64: 'arm64']
    // Atoms that other keys own: letting them in through `labels` would bypass validation.
    private static final List<String> RESERVED = ['spot', 'ondemand', 'on-demand', 'exact']
    // Accelerator families `accel` asks for (a name starting with one of these), and their aliases.
    static final List<String> ACCELERATORS = ['inferentia', 'trainium', 'neuron', 'gaudi', 'habana']
    private static final Map<String, String> ACCELERATOR_ALIASES = [habana: 'gaudi']
    private static final String DEVICE = /([a-z][a-z0-9._-]*)(?::(\d+))?/

    /** Problems with the values of `spec` (unknown keys are the caller's check), each naming its key. */
    @NonCPS
    static List<String> problems(Map spec) {
        List<String> out = []
        if (ConfigCheck.given(spec.mem) && ConfigCheck.given(spec.memory)) {
            out << 'memory is an alias of mem: give only one of them'
        }
        // Collect every problem rather than stopping at the first: one failed build shows them all.
        for (String key : KEYS) {
            try {
                atomFor(key, spec)
            } catch (IllegalArgumentException e) {
                out << "${key} ${e.message}".toString()
            }
        }
        return out
    }

    /** The label expression; throws IllegalArgumentException listing every problem. */
    @NonCPS
    static String render(Map spec) {
        List<String> found = problems(spec)
        if (found) {
            throw new IllegalArgumentException(found.join('; '))
        }
        return atoms(spec).collect { LabelAtoms.expression(it) }.join(' && ')
    }

    /** The label's atoms, unquoted, in label order. */
    @NonCPS
    static List<String> atoms(Map spec) {
        List<String> out = []
        for (String key : KEYS) {
            def atom = atomFor(key, spec)
            if (atom instanceof List) {
                out.addAll(atom)
            } else if (atom != null) {
                out << atom
            }
        }
        return out
    }

    // The atom (or atoms) one key contributes, null when the key adds nothing.
    @NonCPS
    private static Object atomFor(String key, Map spec) {
        def value = spec[key]
        switch (key) {
            case 'managedAtom': return managedAtom(value)
            case 'labels': return plainAtoms(value)
            case 'autotune': return autotune(value)
            case 'market': return marketAtom(value)
        }
        if (!ConfigCheck.given(value)) {
            return null
        }
        if (value instanceof Boolean) {
            throw new IllegalArgumentException("must be a value, not ${value}")
        }
        String name = key == 'memory' ? 'mem' : key
        return "${name}=${valueText(key, value)}".toString()
    }

    @NonCPS
    private static String valueText(String key, Object value) {
        switch (key) {
            case 'vcpu': return positiveWhole(value, 'a whole number of at least 1')
            case 'mem':
            case 'memory': return Units.memory(value)
            case 'gpu': return gpu(value)
            case 'accel': return accel(value)
            case 'arch': return arch(value)
            case 'disk': return disk(value)
            case 'type': return matching(value, /[a-z0-9][a-z0-9-]*\.[a-z0-9-]+/, 'an instance type such as m5.2xlarge')
            case 'family': return matching(value, /[a-z][a-z0-9-]*/, 'an instance family such as m5 or c6g')
            case 'region': return matching(value, /[a-z]{2}(-[a-z]+)+-\d+/, 'an AWS region such as us-east-1')
            case 'timeout': return Units.duration(value)
        }
        throw new IllegalStateException("no rule for ${key}")
    }

    @NonCPS
    private static String managedAtom(Object value) {
        if (value == null) {
            return DEFAULT_MANAGED_ATOM
        }
        String atom = value.toString().trim()
        if (!atom || atom.contains('=')) {
            throw new IllegalArgumentException("must be a non-empty label without '=', got '${value}'")
        }
        return atom
    }

    @NonCPS
    private static List<String> plainAtoms(Object value) {
        if (value == null) {
            return []
        }
        if (!(value instanceof List)) {
            throw new IllegalArgumentException("must be a list of plain labels, e.g. ['linux'], got '${value}'")
        }
        return value.collect { Object item ->
            String atom = ConfigCheck.given(item) ? item.toString().trim() : ''
            if (!atom || atom.contains('=') || RESERVED.contains(atom.toLowerCase())) {
                throw new IllegalArgumentException("must hold plain labels (not empty, no '=', not spot/ondemand/exact: use the keys), got '${item}'")
            }
            return atom
        }
    }

    @NonCPS
    private static String autotune(Object value) {
        if (value != null && !(value instanceof Boolean)) {
            throw new IllegalArgumentException("must be true or false, got '${value}'")
        }
        return value == false ? 'exact' : null
    }

    @NonCPS
    private static String marketAtom(Object value) {
        String market = normaliseMarket(value)
        if (market == null) {
            throw new IllegalArgumentException("must be one of ${MARKETS.join(', ')}, got '${value}'")
        }
        return [any: null, spot: 'spot', 'on-demand': 'ondemand'][market]
    }

    /** 'any', 'spot' or 'on-demand' (null and blank mean 'any'; 'ondemand' is accepted); null if unknown. */
    @NonCPS
    static String normaliseMarket(Object value) {
        if (!ConfigCheck.given(value)) {
            return 'any'
        }
        String market = value.toString().trim().toLowerCase()
        market = market == 'ondemand' ? 'on-demand' : market
        return MARKETS.contains(market) ? market : null
    }

    // gpu: a count of NVIDIA GPUs, or a vendor, series or model (nvidia, amd, radeon, a10g) with an optional count.
    @NonCPS
    private static String gpu(Object value) {
        String text = value.toString().trim().toLowerCase()
        String what = 'a count of at least 1 (NVIDIA GPUs), a vendor or model (nvidia, radeon, a10g) or model:count (a10g:4)'
        if (text ==~ /\d+(\.0+)?/) {
            return positiveWhole(value, what)
        }
        def m = (text =~ DEVICE)
        if (!m.matches() || (m.group(2) != null && Long.parseLong(m.group(2)) < 1)) {
            throw new IllegalArgumentException("must be ${what}, got '${value}'")
        }
        String family = acceleratorFamily(m.group(1))
        if (family != null) {
            throw new IllegalArgumentException("names an accelerator, not a GPU: use accel: '${family}${m.group(2) ? ':' + m.group(2) : ''}'")
        }
        return text
    }

    // accel: a Gaudi, Inferentia or Trainium model (gaudi, inferentia2, trainium2, neuron) with an optional count.
    @NonCPS
    private static String accel(Object value) {
        String text = value.toString().trim().toLowerCase()
        String what = "a Gaudi, Inferentia or Trainium model (gaudi, inferentia2, neuron) or model:count ('trainium:16')"
        if (text ==~ /\d+(\.0+)?/) {
            throw new IllegalArgumentException("must be ${what}, got '${value}' (a count alone names no accelerator)")
        }
        def m = (text =~ DEVICE)
        if (!m.matches() || (m.group(2) != null && Long.parseLong(m.group(2)) < 1)) {
            throw new IllegalArgumentException("must be ${what}, got '${value}'")
        }
        String family = acceleratorFamily(m.group(1))
        if (family == null) {
            throw new IllegalArgumentException("must be ${what}, got '${value}' (a GPU goes under gpu)")
        }
        return m.group(2) ? "${family}:${m.group(2)}".toString() : family
    }

    /** The accelerator family a lower-case device name belongs to (aliases resolved), or null. */
    @NonCPS
    static String acceleratorFamily(String name) {
        String plain = name.replaceAll(/[^a-z0-9]/, '')
        if (!ACCELERATORS.any { plain.startsWith(it) }) {
            return null
        }
        return ACCELERATOR_ALIASES[plain] ?: plain
    }

    @NonCPS
    private static String arch(Object value) {
        String arch = ARCH[value.toString().trim().toLowerCase()]
        if (arch == null) {
            throw new IllegalArgumentException("must be x86_64 or arm64, got '${value}'")
        }
        return arch
    }

    @NonCPS
    private static String disk(Object value) {
        BigDecimal gib = Units.decimal(value)
        if (gib == null || gib <= 0) {
            throw new IllegalArgumentException("must be a number of GiB greater than zero, got '${value}'")
        }
        return value.toString().trim()
    }

    @NonCPS
    private static String positiveWhole(Object value, String what) {
        Long number = Units.wholeNumber(value)
        if (number == null || number < 1) {
            throw new IllegalArgumentException("must be ${what}, got '${value}'")
        }
        return number.toString()
    }

    @NonCPS
    private static String matching(Object value, String pattern, String what) {
        String text = value.toString().trim().toLowerCase()
        if (!(text ==~ pattern)) {
            throw new IllegalArgumentException("must be ${what}, got '${value}'")
        }
        return text
    }
}
