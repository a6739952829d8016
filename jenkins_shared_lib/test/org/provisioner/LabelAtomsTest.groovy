package org.provisioner

import org.junit.Test

class LabelAtomsTest {
    @Test
    void atomsJenkinsLeavesPlainStayPlain() {
        ['ec2', 'vcpu=8', 'mem=1.5GiB', 'arch=x86_64', 'type=m5.2xlarge', 'region=us-east-1', 'a-b', '32bit.dot'].each {
            assert !LabelAtoms.needsQuotes(it): it
            assert LabelAtoms.expression(it) == it
        }
    }

    @Test
    void checkGoodNameCharactersBlanksAndTrailingDotsAreQuoted() {
        ['gpu=a10g:4', 'a b', 'f(x)', 'x?', 'a*', 'a/b', 'a\\b', '50%', 'a!', 'me@host', '#1', '$x', 'a^b',
         'a&b', 'a|b', 'a<b', 'a>b', '[x]', 'a;b', 'v1.', '.', '..', 'tab\there', "it's", 'say"hi'].each {
            assert LabelAtoms.needsQuotes(it): it
        }
    }

    @Test
    void quotingEscapesQuotesAndBackslashes() {
        assert LabelAtoms.expression('gpu=a10g:4') == '"gpu=a10g:4"'
        assert LabelAtoms.expression('pool "a"\\b') == '"pool \\"a\\"\\\\b"'
        assert LabelAtoms.expression('a\nb') == '"a\\nb"'
    }
}
