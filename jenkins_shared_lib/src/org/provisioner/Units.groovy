package org.provisioner

import com.cloudbees.groovy.cps.NonCPS

/**
 * The memory and duration units of docs/labels.md, checked on the Jenkins side so that a label the
 * step renders is always one the Python parser (provisioner/units.py) accepts.
 */
class Units implements Serializable {
    // A bare number is GiB; suffixes are case-insensitive. Same grammar as units.parse_memory_gib.
    private static final String MEMORY = /(?i)(\d+(?:\.\d+)?|\.\d+)(g|gi|gib|m|mi|mib)?/
    // 5400, 5400s, 90m, 2h, 1d, 1h30m (parts in any order, as units.parse_duration_s reads them).
    private static final String DURATION = /(?i)\d+(?:\.\d+)?|(?:\d+(?:\.\d+)?[dhms])+/
    private static final Map<String, Integer> SECONDS = [d: 86400, h: 3600, m: 60, s: 1]

    /** The memory text for a label ('16', '512Mi', '1.5GiB'), kept as written; throws if invalid. */
    @NonCPS
    static String memory(Object value) {
        String text = compact(value)
        if (!(text ==~ MEMORY)) {
            throw new IllegalArgumentException("must be a number of GiB or a size with G, Gi, GiB, M, Mi or MiB, got '${value}'")
        }
        if (memoryGib(text) <= 0) {
            throw new IllegalArgumentException("must be greater than zero, got '${value}'")
        }
        return text
    }

    /** GiB in a valid memory text: '512M' -> 0.5. */
    @NonCPS
    static BigDecimal memoryGib(String text) {
        def m = (text =~ MEMORY)
        m.matches()
        BigDecimal number = new BigDecimal(m.group(1))
        String unit = (m.group(2) ?: 'g').toLowerCase()
        return unit.startsWith('m') ? number / 1024 : number
    }

    /** The duration text for a label ('2h', '5400', '1h30m'), lower-cased; throws if invalid. */
    @NonCPS
    static String duration(Object value) {
        String text = compact(value).toLowerCase()
        if (!(text ==~ DURATION)) {
            throw new IllegalArgumentException("must be seconds or a duration such as 90m, 2h, 1d, 1h30m, got '${value}'")
        }
        if (durationSeconds(text) <= 0) {
            throw new IllegalArgumentException("must be greater than zero, got '${value}'")
        }
        return text
    }

    /** Seconds in a valid duration text: '1h30m' -> 5400. */
    @NonCPS
    static BigDecimal durationSeconds(String text) {
        if (text ==~ /\d+(?:\.\d+)?/) {
            return new BigDecimal(text)
        }
        BigDecimal total = 0
        def parts = (text.toLowerCase() =~ /(\d+(?:\.\d+)?)([dhms])/)
        while (parts.find()) {
            total += new BigDecimal(parts.group(1)) * SECONDS[parts.group(2)]
        }
        return total
    }

    /** A positive whole number from an Integer, an integral BigDecimal or a digit string; else null. */
    @NonCPS
    static Long wholeNumber(Object value) {
        String text = compact(value)
        if (text ==~ /\d+(\.0+)?/) {
            return new BigDecimal(text).longValueExact()
        }
        return null
    }

    /** A non-negative decimal from a number or a string; else null. */
    @NonCPS
    static BigDecimal decimal(Object value) {
        String text = compact(value)
        return text ==~ /\d+(\.\d+)?/ ? new BigDecimal(text) : null
    }

    // Blanks inside a size ('512 MiB') carry no meaning and would force quoting in the label.
    @NonCPS
    private static String compact(Object value) {
        return String.valueOf(value).replaceAll(/\s+/, '')
    }
}
