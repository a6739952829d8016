package org.provisioner

import org.junit.Test

import static org.junit.Assert.fail

class UnitsTest {
    @Test
    void memoryIsKeptAsWrittenAndReadAsGib() {
        assert Units.memory(16) == '16'
        assert Units.memory(' 512 MiB ') == '512MiB'
        assert Units.memory(new BigDecimal('1.5')) == '1.5'
        assert Units.memoryGib('16G') == 16
        assert Units.memoryGib('512M') == 0.5
        assert Units.memoryGib('512mi') == 0.5
        assert Units.memoryGib('1.5GiB') == 1.5
        assert Units.memoryGib('.5') == 0.5
    }

    @Test
    void badMemoryIsRejectedWithTheReason() {
        assert rejection { Units.memory('16TB') }.contains('G, Gi, GiB, M, Mi or MiB')
        assert rejection { Units.memory('-4') }.contains("got '-4'")
        assert rejection { Units.memory('0M') }.contains('greater than zero')
        assert rejection { Units.memory('16.') }.contains("got '16.'")
    }

    @Test
    void durationsFollowTheContract() {
        assert Units.duration('2H') == '2h'
        assert Units.duration(5400) == '5400'
        assert Units.durationSeconds('5400s') == 5400
        assert Units.durationSeconds('90m') == 5400
        assert Units.durationSeconds('1h30m') == 5400
        assert Units.durationSeconds('1d') == 86400
        assert Units.durationSeconds('1.5h') == 5400
    }

    @Test
    void badDurationsAreRejected() {
        assert rejection { Units.duration('soon') }.contains('90m, 2h')
        assert rejection { Units.duration('0') }.contains('greater than zero')
        assert rejection { Units.duration('0h0m') }.contains('greater than zero')
        assert rejection { Units.duration('2 hours') }.contains("got '2 hours'")
        assert rejection { Units.duration('-5') }.contains("got '-5'")
    }

    @Test
    void wholeNumbersAcceptIntegralValuesOnly() {
        assert Units.wholeNumber(8) == 8L
        assert Units.wholeNumber('8') == 8L
        assert Units.wholeNumber(new BigDecimal('8.0')) == 8L
        assert Units.wholeNumber(2.5) == null
        assert Units.wholeNumber(-1) == null
        assert Units.wholeNumber('eight') == null
    }

    static String rejection(Closure body) {
        try {
            body()
        } catch (IllegalArgumentException e) {
            return e.message
        }
        fail('expected IllegalArgumentException')
        return null
    }
}
