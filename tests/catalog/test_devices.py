"""What the catalog knows of a type's devices: GPUs with their maker, and accelerators (Gaudi,
Inferentia, Trainium...) apart from GPUs, from aws_instances.csv's gpu_* and accelerator_* columns."""

from __future__ import annotations

from pathlib import Path

from provisioner.catalog import build_catalog, load_catalog
from tests.catalog.test_load import HEADER_I, small_data, write


def device_data(tmp_path: Path) -> Path:
    small_data(tmp_path)
    write(tmp_path, "aws_instances.csv", [
        "g5.xlarge,g5,x86_64,4,16,1,A10G,NVIDIA,22.352,us-east-1,1.006,,0,GPU instance,1,0,t",
        "g4ad.xlarge,g4ad,x86_64,4,16,1,Radeon Pro V520,AMD,8,us-east-1,0.379,,0,GPU instance,1,0,t",
        "dl1.24xlarge,dl1,x86_64,96,768,8,Gaudi HL-205,Habana,32,us-east-1,13.1,,0,ML ASIC,1,0,t",
        "inf2.xlarge,inf2,x86_64,4,16,0,,,,us-east-1,0.758,Inferentia2,1,ML ASIC,1,0,t",
        "trn1.32xlarge,trn1,x86_64,128,512,0,,,,us-east-1,21.5,Trainium,16,ML ASIC,1,0,t",
        "f1.2xlarge,f1,x86_64,8,122,0,,,,us-east-1,1.65,Virtex UltraScale (VU9P),1,FPGA,1,0,t",
        "g2.2xlarge,g2,x86_64,8,15,,,,,us-east-1,0.65,,,GPU instance,0,0,pricefeed+name-heuristic",
        "m5.large,m5,x86_64,2,8,0,,,,us-east-1,0.096,,0,GP,1,0,t",
    ], HEADER_I)
    return tmp_path


def test_offers_carry_gpu_maker_and_accelerators_apart(tmp_path):
    cat = build_catalog([device_data(tmp_path)])
    g5, g4ad, m5 = cat.find("g5.xlarge"), cat.find("g4ad.xlarge"), cat.find("m5.large")
    assert (g5.gpu_count, g5.gpu_model, g5.gpu_manufacturer, g5.accel_count) == (1, "A10G", "NVIDIA", 0)
    assert (g4ad.gpu_count, g4ad.gpu_manufacturer) == (1, "AMD")
    assert (m5.gpu_count, m5.gpu_manufacturer, m5.accel_model, m5.accel_count, m5.accel_kind) == (0, None, None, 0, None)
    inf2, trn1 = cat.find("inf2.xlarge"), cat.find("trn1.32xlarge")
    assert (inf2.gpu_count, inf2.accel_model, inf2.accel_count, inf2.accel_kind) == (0, "Inferentia2", 1, "neuron")
    assert (trn1.gpu_count, trn1.accel_model, trn1.accel_count, trn1.accel_kind) == (0, "Trainium", 16, "neuron")
    f1 = cat.find("f1.2xlarge")
    assert (f1.gpu_count, f1.accel_count, f1.accel_kind) == (0, 1, "fpga")
    # unknown counts (types in neither spec source) are no devices, not a guess
    assert (cat.find("g2.2xlarge").gpu_count, cat.find("g2.2xlarge").accel_count) == (0, 0)


def test_gaudi_is_an_accelerator_although_aws_lists_it_among_gpus(tmp_path):
    dl1 = build_catalog([device_data(tmp_path)]).find("dl1.24xlarge")
    assert (dl1.gpu_count, dl1.gpu_model, dl1.gpu_manufacturer) == (0, None, None)
    assert (dl1.accel_model, dl1.accel_count, dl1.accel_kind) == ("Gaudi HL-205", 8, "gaudi")


def test_the_bundled_catalog_counts_only_nvidia_and_amd_as_gpus(tmp_path):
    offers = load_catalog(cache=tmp_path / "no-cache").offers
    makers = {o.gpu_manufacturer for o in offers if o.gpu_count}
    assert makers == {"NVIDIA", "AMD"}
    kinds = {o.accel_kind for o in offers if o.accel_count}
    assert {"neuron", "gaudi"} <= kinds
    by_type = {o.instance_type: o for o in offers}
    assert by_type["dl1.24xlarge"].gpu_count == 0 and by_type["dl1.24xlarge"].accel_count == 8
    assert by_type["inf2.xlarge"].gpu_count == 0 and by_type["inf2.xlarge"].accel_model == "Inferentia2"
    assert by_type["g4ad.xlarge"].gpu_manufacturer == "AMD" and by_type["g5.xlarge"].gpu_manufacturer == "NVIDIA"
