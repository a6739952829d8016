package org.provisioner.harness

/** The fields of `currentBuild` the library and the Jenkinsfile use. */
class FakeBuild {
    String description
    String result = 'SUCCESS'
    int number = 7
}
