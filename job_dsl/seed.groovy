// Job DSL seed: example jobs that get right-sized agents from the provisioner daemon through their
// labels. Run it from a seed job ("Process Job DSLs") whose workspace is this repository, so that
// readFileFromWorkspace finds job_dsl/pipelines/. The seed job may set PROVISIONER_REPO_URL.

String repoUrl = binding.hasVariable('PROVISIONER_REPO_URL') ? PROVISIONER_REPO_URL : 'https://git.example.com/provisioner.git'

folder('provisioner-examples') {
    displayName('Provisioner examples')
    description('Jobs whose agents the provisioner daemon starts to fit their labels.')
}

// Freestyle jobs carry their label expression themselves; the daemon reads it from the queue.
// Each label is written as remoteLabel renders it (a test checks that they agree).
job('provisioner-examples/unit-tests') {
    description('At least 4 vCPUs and 8 GiB, spot only.')
    label('ec2 && vcpu=4 && mem=8 && spot')
    logRotator {
        numToKeep(30)
    }
    steps {
        shell('make test')
    }
}

job('provisioner-examples/gpu-smoke') {
    description('One A10G GPU on demand, sized exactly as declared, 30 minutes at most.')
    // ':' is not allowed bare in a Jenkins label atom, so the GPU atom is quoted.
    label('ec2 && "gpu=a10g:1" && timeout=30m && ondemand && exact')
    steps {
        shell('nvidia-smi')
    }
}

// Pipeline jobs use runRemote, which renders the label for each attempt and reports the cost.
pipelineJob('provisioner-examples/train-model') {
    description('Trains on A10G GPUs; spot unless MARKET says otherwise.')
    parameters {
        stringParam('GPUS', '1', 'How many A10G GPUs')
        choiceParam('MARKET', ['any', 'spot', 'on-demand'], 'any: the planner chooses; spot or on-demand: only that market')
    }
    definition {
        cps {
            script(readFileFromWorkspace('job_dsl/pipelines/train-model.groovy'))
            sandbox()
        }
    }
}

pipelineJob('provisioner-examples/nightly-benchmark') {
    description('A nightly benchmark on arm64 spot capacity, with credentials for the results store.')
    // Job DSL 1.77+ deprecates `triggers {}` in pipelineJob: triggers are a job property.
    properties {
        pipelineTriggers {
            triggers {
                cron {
                    spec('H 2 * * *')
                }
            }
        }
    }
    definition {
        cps {
            script(readFileFromWorkspace('job_dsl/pipelines/nightly-benchmark.groovy'))
            sandbox()
        }
    }
}

// The project's own pipeline, from its Jenkinsfile.
pipelineJob('provisioner') {
    description('Lint, Python and Groovy tests, and the wheel, on an agent the daemon starts.')
    definition {
        cpsScm {
            scm {
                git {
                    remote {
                        url(repoUrl)
                    }
                    branch('*/main')
                }
            }
            scriptPath('Jenkinsfile')
            lightweight()
        }
    }
}
