package org.provisioner

import com.cloudbees.groovy.cps.NonCPS

/**
 * How one atom is written inside a Jenkins label expression (Jenkins' LabelExpression grammar):
 * plain when Jenkins' own printer leaves it plain, else as a double-quoted string.
 */
class LabelAtoms implements Serializable {
    // Jenkins#checkGoodName rejects these; LabelAtom#getExpression then quotes the atom.
    private static final String UNSAFE = '?*/\\%!@#$^&|<>[]:;'
    // Blanks and parentheses end an atom for the lexer; quotes would start a string literal.
    private static final String BREAKS_ATOM = ' \t\n()"\''
    private static final Map<String, String> ESCAPES = [
        '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\f': '\\f', '\b': '\\b',
    ]

    @NonCPS
    static boolean needsQuotes(String name) {
        if (!name || name == '.' || name == '..' || name.endsWith('.')) {
            return true
        }
        return name.toCharArray().any { char c ->
            UNSAFE.indexOf((int) c) >= 0 || BREAKS_ATOM.indexOf((int) c) >= 0 || Character.isISOControl(c)
        }
    }

    @NonCPS
    static String quote(String name) {
        StringBuilder out = new StringBuilder('"')
        for (char c : name.toCharArray()) {
            String s = String.valueOf(c)
            out.append(ESCAPES.containsKey(s) ? ESCAPES[s] : s)
        }
        return out.append('"').toString()
    }

    /** The atom as it must appear in an expression. */
    @NonCPS
    static String expression(String name) {
        return needsQuotes(name) ? quote(name) : name
    }
}
