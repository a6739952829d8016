import java.lang.annotation.Retention
import java.lang.annotation.RetentionPolicy

/** Stand-in for Jenkins' @Library, so that the Jenkinsfile's `@Library('provisioner') _` compiles in tests. */
@Retention(RetentionPolicy.SOURCE)
@interface Library {
    String[] value()
}
