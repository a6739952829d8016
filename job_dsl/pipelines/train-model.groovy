// Example: GPU training. GPU count and market come from the job's parameters; a lost spot
// agent is retried, on demand from the second attempt when MARKET is 'any'.
@Library('provisioner') _

Map record = runRemote(
    image: 'pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime',
    command: ['python', 'train.py', '--epochs', '10'],
    gpu: "a10g:${params.GPUS}",
    vcpu: 8,
    mem: '32G',
    disk: 200,
    market: params.MARKET,
    timeout: '4h',
    env: [WANDB_MODE: 'offline'],
    credentials: ['hf-token'],
    dockerArgs: ['--shm-size', '8g'],
    network: 'bridge',        // downloads from the Hugging Face hub with the forwarded token
)
echo "model trained in ${record?.duration_s} s for \$${record?.cost_usd}"
