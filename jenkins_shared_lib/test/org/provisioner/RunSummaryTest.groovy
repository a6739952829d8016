package org.provisioner

import org.junit.Test
import org.provisioner.harness.Paths

class RunSummaryTest {
    static final Map RECORD = [instance_type: 'm5.2xlarge', market: 'spot', duration_s: 754.2, cost_usd: 0.04213,
                               mem_max_bytes: 3435973837L, summary_line: 'Exit code: 0']

    @Test
    void descriptionShowsInstanceMarketDurationCostAndPeakMemory() {
        assert RunSummary.describe(RECORD, 1) == 'm5.2xlarge spot, 12m34s, $0.0421, peak mem 3.2 GiB'
        assert RunSummary.describe(RECORD, 3).endsWith(', after 2 lost agents')
        assert RunSummary.describe(RECORD, 2).endsWith(', after 1 lost agent')
    }

    @Test
    void missingFieldsAreLeftOut() {
        assert RunSummary.describe([duration_s: 59, mem_max_bytes: 200 * 1024 * 1024], 1) == 'local, 59s, peak mem 200 MiB'
        assert RunSummary.describe([instance_type: 'c6g.large', cost_usd: 12.5], 1) == 'c6g.large, $12.50'
    }

    @Test
    void durationsReadLikeTheCli() {
        assert RunSummary.duration(7260) == '2h1m'
        assert RunSummary.duration(90061) == '1d1h1m'
        assert RunSummary.duration(3600) == '1h'
        assert RunSummary.duration(0.4) == '0s'
    }

    @Test
    void parseReturnsAPlainMapOrNullForAnEmptyFile() {
        Map parsed = RunSummary.parse('{"instance_type": "m5.large", "cost_usd": 0.1}')
        assert parsed.getClass() == HashMap
        assert parsed.cost_usd == 0.1
        assert RunSummary.parse('') == null
        assert RunSummary.parse('  \n') == null
    }

    @Test
    void failuresNameTheExitCodeMeaning() {
        assert RunSummary.failure(137, [oom_killed: true, summary_line: 'peak 2.0 GiB']) ==
            'runRemote: provisioner run exited with 137 (out of memory): peak 2.0 GiB'
        assert RunSummary.failure(124, null) == 'runRemote: provisioner run exited with 124 (timed out)'
        assert RunSummary.failure(3, null) == 'runRemote: provisioner run exited with 3'
    }

    @Test
    void aRecordWrittenByTheRealRunnerIsRead() {
        // test/fixtures/runner-summary.json: written by `provisioner run --summary-json` on the local
        // Docker engine (no instance type, so no cost or market; nulls are present, not absent).
        Map record = RunSummary.parse(Paths.file('jenkins_shared_lib/test/fixtures/runner-summary.json').text)
        assert record.summary_line == 'exit 0 | 0s | CPU avg n/a max n/a | mem max n/a'
        assert RunSummary.describe(record, 1) == 'local, 0s'
        record.putAll(instance_type: 'm5.large', market: 'spot', cost_usd: 0.0012, mem_max_bytes: 52428800)
        assert RunSummary.describe(record, 1) == 'm5.large spot, 0s, $0.0012, peak mem 50 MiB'
    }

    @Test
    void descriptionsOfSeveralRunsGoOnSeparateLines() {
        assert RunSummary.append(null, 'a') == 'a'
        assert RunSummary.append('a', 'b') == 'a\nb'
    }
}
