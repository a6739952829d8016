package org.provisioner

import com.cloudbees.groovy.cps.NonCPS

/** Checks shared by the steps' maps: unknown keys and "not given" values. */
class ConfigCheck implements Serializable {

    /** A message naming the keys of `given` that are not in `known`, and the known ones; empty if none. */
    @NonCPS
    static List<String> unknownKeys(Map given, Collection known) {
        List<String> unknown = given.keySet().collect { String.valueOf(it) }.findAll { !known.contains(it) }
        if (!unknown) {
            return []
        }
        String names = unknown.collect { "'${it}'" }.join(', ')
        String choices = known.collect { String.valueOf(it) }.sort().join(', ')
        return ["unknown key${unknown.size() > 1 ? 's' : ''} ${names} (known keys: ${choices})".toString()]
    }

    /** Null and blank strings mean "not given", so that empty job parameters can be passed through. */
    @NonCPS
    static boolean given(Object value) {
        return value != null && !(value instanceof CharSequence && value.toString().trim().isEmpty())
    }
}
