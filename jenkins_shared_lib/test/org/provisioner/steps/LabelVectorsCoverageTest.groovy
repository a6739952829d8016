package org.provisioner.steps

import org.junit.Test

/** The vector file covers what the issue asks for, in the shape the Python tests read. */
class LabelVectorsCoverageTest {
    static final Set<String> REQUIREMENT_KEYS = ['vcpu', 'mem_gib', 'gpu_count', 'gpu_model', 'accel_count', 'accel_model',
        'arch', 'disk_gib',
        'market', 'exact', 'timeout_s', 'type', 'family', 'region', 'atoms'] as Set

    List<Map> valid = LabelVectorsTest.vectors().findAll { !it.invalid }
    List<Map> invalid = LabelVectorsTest.vectors().findAll { it.invalid }

    @Test
    void enoughUniquelyNamedCases() {
        List<String> names = LabelVectorsTest.vectors().collect { it.name as String }
        assert valid.size() >= 20
        assert invalid.size() >= 5
        assert names.unique(false) == names
    }

    @Test
    void requirementsUseOnlyTheAgreedKeys() {
        valid.each { assert REQUIREMENT_KEYS.containsAll((it.requirements as Map).keySet()): it.name }
        valid.each { assert (it.requirements as Map).atoms: "${it.name} has no atoms" }
    }

    @Test
    void everyFeatureIsCovered() {
        Closure<Boolean> some = { Closure<Boolean> test -> valid.any(test) }
        ['16', '16G', '512M', '512Mi', '1.5GiB'].each { unit -> assert some { it.map.mem == (unit ==~ /\d+/ ? unit as int : unit) }: unit }
        assert some { it.label.contains('"gpu=') }
        assert some { it.requirements.gpu_model && it.requirements.gpu_count > 1 }
        assert some { it.requirements.gpu_model == 'nvidia' } && some { it.requirements.gpu_model == 'radeon' }
        assert some { it.label.contains('"accel=') && it.requirements.accel_count > 1 }
        ['inferentia2', 'trainium', 'gaudi'].each { m -> assert some { it.requirements.accel_model == m }: m }
        assert invalid.any { it.map.gpu == 'gaudi' } && invalid.any { it.map.accel == 'a10g' }
        assert some { it.requirements.market == 'spot' } && some { it.requirements.market == 'on-demand' }
        assert some { it.requirements.exact } && some { it.requirements.disk_gib } && some { it.requirements.arch }
        assert some { it.requirements.timeout_s } && some { it.map.managedAtom && it.map.managedAtom != 'ec2' }
    }
}
