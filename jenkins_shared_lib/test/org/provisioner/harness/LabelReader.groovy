package org.provisioner.harness

import org.provisioner.Units

/**
 * A test-only reader of the conjunctions remoteLabel writes, giving the `requirements` object of
 * tests/vectors/labels.json. It keeps the vector file honest (each case's requirements follow
 * from its label) before the Python parser, the real reader, is tested against the same file.
 */
class LabelReader {
    static Map read(String label) {
        Map out = [:]
        List<String> plain = []
        atoms(label).each { String atom ->
            int eq = atom.indexOf('=')
            if (eq < 0) {
                readPlain(atom, out, plain)
            } else {
                readKey(atom.substring(0, eq), atom.substring(eq + 1), out)
            }
        }
        out.atoms = plain
        return out
    }

    /** The atoms of `a && "b c" && d`, unquoted. */
    static List<String> atoms(String label) {
        List<String> out = []
        int i = 0
        while (i < label.length()) {
            StringBuilder atom = new StringBuilder()
            if (label.charAt(i) == '"' as char) {
                i++
                while (label.charAt(i) != '"' as char) {
                    if (label.charAt(i) == '\\' as char) {
                        i++
                    }
                    atom.append(label.charAt(i++))
                }
                i++
            } else {
                while (i < label.length() && label.charAt(i) != ' ' as char) {
                    atom.append(label.charAt(i++))
                }
            }
            out << atom.toString()
            assert label.startsWith(' && ', i) || i == label.length(): "expected ' && ' at ${i} in ${label}"
            i += 4
        }
        return out
    }

    private static void readPlain(String atom, Map out, List<String> plain) {
        if (atom == 'spot') {
            out.market = 'spot'
        } else if (atom == 'ondemand') {
            out.market = 'on-demand'
        } else if (atom == 'exact') {
            out.exact = true
        } else {
            plain << atom
        }
    }

    private static void readKey(String key, String value, Map out) {
        switch (key) {
            case 'vcpu': out.vcpu = value as Integer; break
            case 'mem': out.mem_gib = Units.memoryGib(value); break
            case 'disk': out.disk_gib = new BigDecimal(value); break
            case 'timeout': out.timeout_s = Units.durationSeconds(value); break
            case 'gpu': readDevice('gpu', value, out); break
            case 'accel': readDevice('accel', value, out); break
            default: out[key] = value
        }
    }

    // gpu=N, gpu=MODEL, gpu=MODEL:N, accel=MODEL, accel=MODEL:N
    private static void readDevice(String key, String value, Map out) {
        List<String> parts = value.tokenize(':')
        if (parts[0] ==~ /\d+/) {
            out["${key}_count".toString()] = parts[0] as Integer
        } else {
            out["${key}_model".toString()] = parts[0]
            out["${key}_count".toString()] = parts.size() > 1 ? parts[1] as Integer : 1
        }
    }
}
