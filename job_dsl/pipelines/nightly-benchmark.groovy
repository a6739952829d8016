// Example: a nightly benchmark that must stay on spot (a lost agent is retried on spot) and is
// sized exactly as declared, so that its timings compare night to night.
@Library('provisioner') _

runRemote(
    image: 'registry.example.com/bench:latest',
    command: 'bench --suite nightly --upload "$RESULTS_URL"',
    vcpu: 16,
    mem: 32,
    arch: 'arm64',
    market: 'spot',
    autotune: false,
    retries: 3,
    timeout: '2h',
    env: [RESULTS_URL: 's3://bench-results/nightly'],
    network: 'bridge',        // uploads its results
    credentials: [[id: 'results-store', type: 'usernamePassword', usernameVariable: 'RESULTS_USER', passwordVariable: 'RESULTS_PASSWORD']],
)
