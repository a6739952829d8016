package org.provisioner

import com.cloudbees.groovy.cps.NonCPS
import groovy.json.JsonSlurperClassic

/**
 * Reads the usage record that `provisioner run --summary-json` writes (docs/contracts.md "Usage
 * record", plus `summary_line`) and turns it into what the build shows.
 */
class RunSummary implements Serializable {
    private static final Map<Integer, String> EXIT_MEANINGS = [
        124: 'timed out', 125: 'failed before the job ran: image, Docker engine or launch',
        130: 'interrupted (SIGINT)', 137: 'killed (SIGKILL)', 143: 'stopped (SIGTERM)',
    ]

    /** The record, or null for an empty file (the runner never got to write it). */
    @NonCPS
    static Map parse(String text) {
        if (!text?.trim()) {
            return null
        }
        // JsonSlurperClassic gives plain HashMaps, which CPS can serialise; JsonSlurper's LazyMap cannot.
        def parsed = new JsonSlurperClassic().parseText(text)
        if (!(parsed instanceof Map)) {
            throw new IllegalArgumentException('the run summary is not a JSON object')
        }
        return parsed
    }

    /** One line for the build description: "m5.2xlarge spot, 12m34s, $0.0421, peak mem 3.2 GiB". */
    @NonCPS
    static String describe(Map summary, int attempt) {
        List<String> parts = [summary.instance_type ? [summary.instance_type, summary.market].findAll().join(' ') : 'local']
        if (summary.duration_s != null) {
            parts << duration(summary.duration_s as BigDecimal)
        }
        if (summary.cost_usd != null) {
            parts << money(summary.cost_usd as BigDecimal)
        }
        if (summary.mem_max_bytes != null) {
            parts << "peak mem ${bytes(summary.mem_max_bytes as BigDecimal)}".toString()
        }
        if (attempt > 1) {
            parts << "after ${attempt - 1} lost agent${attempt > 2 ? 's' : ''}".toString()
        }
        return parts.join(', ')
    }

    /** Several runRemote calls in one build each add a line (plain-text descriptions keep newlines). */
    @NonCPS
    static String append(String existing, String line) {
        return existing ? "${existing}\n${line}".toString() : line
    }

    /** The error for a non-zero exit, with the runner's meaning of the code (docs/contracts.md). */
    @NonCPS
    static String failure(int status, Map summary) {
        String meaning = status == 137 && summary?.oom_killed ? 'out of memory' : EXIT_MEANINGS[status]
        String text = "runRemote: provisioner run exited with ${status}${meaning ? " (${meaning})" : ''}"
        return summary?.summary_line ? "${text}: ${summary.summary_line}".toString() : text.toString()
    }

    /** 754 -> '12m34s', 7260 -> '2h1m', 59 -> '59s' (as provisioner's format_duration). */
    @NonCPS
    static String duration(BigDecimal seconds) {
        long s = Math.round(seconds.doubleValue())
        if (s < 60) {
            return "${s}s"
        }
        List<String> parts = []
        [d: 86400L, h: 3600L, m: 60L].each { String unit, Long size ->
            if (s >= size) {
                parts << "${s.intdiv(size)}${unit}".toString()
                s = s % size
            }
        }
        if (s && parts.size() < 2) {
            parts << "${s}s".toString()
        }
        return parts.join('')
    }

    /** Cents hide the cost of short jobs, so below a dollar four decimals are shown. */
    @NonCPS
    static String money(BigDecimal usd) {
        return String.format(Locale.ROOT, usd >= 1 ? '$%.2f' : '$%.4f', usd.doubleValue())
    }

    @NonCPS
    static String bytes(BigDecimal count) {
        double mib = count.doubleValue() / (1024 * 1024)
        return mib >= 1024 ? String.format(Locale.ROOT, '%.1f GiB', mib / 1024) : String.format(Locale.ROOT, '%.0f MiB', mib)
    }
}
