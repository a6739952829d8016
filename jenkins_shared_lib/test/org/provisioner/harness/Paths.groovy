package org.provisioner.harness

/** Where the repository is: set by test/run, else found from the working directory. */
class Paths {
    static File root() {
        String given = System.getProperty('provisioner.root')
        File dir = given ? new File(given) : new File('.').canonicalFile
        while (dir != null && !new File(dir, 'jenkins_shared_lib/vars').isDirectory()) {
            dir = dir.parentFile
        }
        if (dir == null) {
            throw new IllegalStateException('cannot find the repository root; set -Dprovisioner.root')
        }
        return dir
    }

    static File lib() { new File(root(), 'jenkins_shared_lib') }

    static File file(String relative) { new File(root(), relative) }
}
