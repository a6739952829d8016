package org.provisioner

import org.junit.Test

import static org.provisioner.UnitsTest.rejection

class RemoteLabelTest {
    @Test
    void atomsComeInTheFixedOrderWhateverTheMapOrder() {
        Map spec = [autotune: false, market: 'spot', timeout: '2h', region: 'us-east-1', family: 'm5',
                    type: 'm5.large', disk: 30, arch: 'x86_64', gpu: 't4', mem: 8, vcpu: 2, labels: ['linux'],
                    managedAtom: 'ec2']
        assert RemoteLabel.render(spec) ==
            'ec2 && linux && vcpu=2 && mem=8 && gpu=t4 && arch=x86_64 && disk=30 && type=m5.large && ' +
            'family=m5 && region=us-east-1 && timeout=2h && spot && exact'
    }

    @Test
    void theManagedAtomDefaultsToEc2AndAutotuneToOn() {
        assert RemoteLabel.render([vcpu: 2]) == 'ec2 && vcpu=2'
        assert RemoteLabel.render([autotune: true]) == 'ec2'
    }

    @Test
    void everyProblemIsReportedAndNamesItsKey() {
        List<String> problems = RemoteLabel.problems([vcpu: 0, mem: '1TB', market: 'cheap', arch: 'sparc', timeout: 'x'])
        assert problems.size() == 5
        assert problems.collect { it.tokenize(' ')[0] } == ['vcpu', 'mem', 'arch', 'timeout', 'market']
        assert rejection { RemoteLabel.render([vcpu: -1]) }.startsWith('vcpu must be a whole number')
    }

    @Test
    void gpuTakesCountModelOrBoth() {
        assert RemoteLabel.atoms([gpu: 2]) == ['ec2', 'gpu=2']
        assert RemoteLabel.atoms([gpu: 'L40S']) == ['ec2', 'gpu=l40s']
        assert RemoteLabel.atoms([gpu: 'a10g:4']) == ['ec2', 'gpu=a10g:4']
        assert RemoteLabel.problems([gpu: ':4']) == ["gpu must be a count of at least 1 (NVIDIA GPUs), a vendor or model " +
                                                     "(nvidia, radeon, a10g) or model:count (a10g:4), got ':4'"]
        assert RemoteLabel.problems([gpu: 'a10g:x']).size() == 1
        assert RemoteLabel.problems([gpu: true]) == ['gpu must be a value, not true']
    }

    @Test
    void gpuNamesAVendorSeriesOrModelButNeverAnAccelerator() {
        assert RemoteLabel.atoms([gpu: 'NVIDIA:4']) == ['ec2', 'gpu=nvidia:4']
        assert RemoteLabel.atoms([gpu: 'radeon']) == ['ec2', 'gpu=radeon']
        assert RemoteLabel.problems([gpu: 'gaudi']) == ["gpu names an accelerator, not a GPU: use accel: 'gaudi'"]
        assert RemoteLabel.problems([gpu: 'Trainium2:16']) == ["gpu names an accelerator, not a GPU: use accel: 'trainium2:16'"]
        assert RemoteLabel.problems([gpu: 'habana']) == ["gpu names an accelerator, not a GPU: use accel: 'gaudi'"]
    }

    @Test
    void accelTakesAGaudiInferentiaOrTrainiumModelWithAnOptionalCount() {
        assert RemoteLabel.atoms([accel: 'Inferentia2']) == ['ec2', 'accel=inferentia2']
        assert RemoteLabel.atoms([accel: 'trainium:16']) == ['ec2', 'accel=trainium:16']
        assert RemoteLabel.render([accel: 'trainium:16']) == 'ec2 && "accel=trainium:16"'
        assert RemoteLabel.atoms([accel: 'habana:8']) == ['ec2', 'accel=gaudi:8']
        assert RemoteLabel.atoms([gpu: 1, accel: 'neuron', arch: 'x86_64']) == ['ec2', 'gpu=1', 'accel=neuron', 'arch=x86_64']
        String what = "accel must be a Gaudi, Inferentia or Trainium model (gaudi, inferentia2, neuron) or model:count ('trainium:16')"
        assert RemoteLabel.problems([accel: 2]) == ["${what}, got '2' (a count alone names no accelerator)".toString()]
        assert RemoteLabel.problems([accel: 'a10g']) == ["${what}, got 'a10g' (a GPU goes under gpu)".toString()]
        assert RemoteLabel.problems([accel: 'gaudi:0']) == ["${what}, got 'gaudi:0'".toString()]
        assert RemoteLabel.problems([accel: true]) == ['accel must be a value, not true']
    }

    @Test
    void labelsMustBePlainAtoms() {
        assert RemoteLabel.problems([labels: 'linux'])[0].startsWith('labels must be a list')
        assert RemoteLabel.problems([labels: ['vcpu=4']])[0].startsWith('labels must hold plain labels')
        assert RemoteLabel.problems([labels: ['Exact']])[0].startsWith('labels must hold plain labels')
        assert RemoteLabel.problems([managedAtom: 'ec2=1'])[0].startsWith('managedAtom must be')
    }

    @Test
    void typeFamilyAndRegionAreCheckedForShape() {
        assert RemoteLabel.problems([type: 'm5']) == ["type must be an instance type such as m5.2xlarge, got 'm5'"]
        assert RemoteLabel.problems([family: 'm5.large'])[0].startsWith('family must be')
        assert RemoteLabel.problems([region: 'us-east'])[0].startsWith('region must be')
        assert RemoteLabel.render([region: 'us-gov-west-1']) == 'ec2 && region=us-gov-west-1'
    }
}
