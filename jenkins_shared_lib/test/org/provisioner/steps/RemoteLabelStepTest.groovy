package org.provisioner.steps

import org.junit.Test
import org.provisioner.RemoteLabel
import org.provisioner.harness.PipelineError
import org.provisioner.harness.PipelineHarness

class RemoteLabelStepTest {
    // One valid value for every label key, so that both steps must accept every key.
    static final Map EVERY_KEY = [managedAtom: 'ec2', labels: ['linux'], vcpu: 2, mem: 4, memory: null, gpu: 1,
                                  accel: 'neuron', arch: 'arm64', disk: 20, type: 'm6g.large', family: 'm6g', region: 'us-east-1',
                                  timeout: '1h', market: 'spot', autotune: false]

    final PipelineHarness jenkins = new PipelineHarness()

    @Test
    void bothStepsAcceptEveryLabelKey() {
        assert EVERY_KEY.keySet() == RemoteLabel.KEYS as Set
        String label = 'ec2 && linux && vcpu=2 && mem=4 && gpu=1 && accel=neuron && arch=arm64 && disk=20 && type=m6g.large && ' +
                       'family=m6g && region=us-east-1 && timeout=1h && spot && exact'
        assert jenkins.call('remoteLabel', EVERY_KEY) == label
        jenkins.shHandler = jenkins.runner([duration_s: 1])
        jenkins.call('runRemote', EVERY_KEY + [command: 'true'])
        assert jenkins.nodeLabels() == [label]
    }

    @Test
    void unknownKeysAreNamedWithTheKnownOnes() {
        try {
            jenkins.call('remoteLabel', [vcpus: 2, ram: 4])
            assert false
        } catch (PipelineError e) {
            assert e.message == "remoteLabel: unknown keys 'vcpus', 'ram' (known keys: accel, arch, autotune, disk, family, " +
                "gpu, labels, managedAtom, market, mem, memory, region, timeout, type, vcpu)"
        }
    }

    @Test
    void theDefaultIsTheManagedAtomAlone() {
        assert jenkins.call('remoteLabel', [:]) == 'ec2'
    }
}
