"""What runs on an instance: the user-data templates (*.sh.j2, rendered by provisioner.bootstrap),
the Packer recipe of the pre-warmed image (packer/) and the docker cloud's instance image (docker/).
A package only so that the templates can ship as package data; it holds no code."""
