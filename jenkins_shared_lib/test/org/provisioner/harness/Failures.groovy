package org.provisioner.harness

/** What `error(...)` throws in Jenkins (hudson.AbortException): fails the build, never retried on agent loss. */
class PipelineError extends RuntimeException {
    PipelineError(String message) { super(message) }
}

/** A step that Jenkins fails, such as `sh` with a non-zero exit. */
class StepFailure extends RuntimeException {
    StepFailure(String message) { super(message) }
}

/** The agent went away mid-step (spot interruption, terminated instance): what retry's agent() matches. */
class AgentLost extends RuntimeException {
    AgentLost(String message) { super(message) }
}
