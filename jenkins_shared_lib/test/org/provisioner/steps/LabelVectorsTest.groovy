package org.provisioner.steps

import groovy.json.JsonSlurper
import org.junit.Test
import org.junit.runner.RunWith
import org.junit.runners.Parameterized
import org.junit.runners.Parameterized.Parameters
import org.provisioner.harness.LabelReader
import org.provisioner.harness.Paths
import org.provisioner.harness.PipelineError
import org.provisioner.harness.PipelineHarness

/**
 * tests/vectors/labels.json, the label contract shared with the Python parser: each valid case's
 * map renders to exactly its label through the remoteLabel step, and its requirements follow from
 * that label; each invalid case fails the step with its error.
 */
@RunWith(Parameterized)
class LabelVectorsTest {
    static List<Map> vectors() {
        new JsonSlurper().parse(Paths.file('tests/vectors/labels.json')) as List<Map>
    }

    @Parameters(name = '{0}')
    static Collection<Object[]> cases() {
        vectors().collect { [it.name, it] as Object[] }
    }

    final String name
    final Map vector

    LabelVectorsTest(String name, Map vector) {
        this.name = name
        this.vector = vector
    }

    @Test
    void theStepRendersTheLabelOrRejectsTheMap() {
        PipelineHarness jenkins = new PipelineHarness()
        if (vector.invalid) {
            try {
                jenkins.call('remoteLabel', vector.map as Map)
                assert false: "${name}: expected an error containing '${vector.error}'"
            } catch (PipelineError e) {
                assert e.message.startsWith('remoteLabel: ')
                assert e.message.contains(vector.error as String)
            }
        } else {
            assert jenkins.call('remoteLabel', vector.map as Map) == vector.label
        }
    }

    @Test
    void requirementsFollowFromTheLabel() {
        if (vector.invalid) {
            assert vector.error && vector.map != null && !vector.containsKey('label') && !vector.containsKey('requirements')
            return
        }
        Map read = LabelReader.read(vector.label as String)
        Map expected = vector.requirements as Map
        assert read.keySet() == expected.keySet()
        read.each { key, value -> assert value == expected[key]: "${name}: ${key}" }
    }
}
