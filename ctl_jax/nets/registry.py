"""Base networks by name, so checkpoints and configs can record which network they hold."""

from __future__ import annotations

import dataclasses

from ctl_jax.nets.adafm_net import adafm_net
from ctl_jax.nets.cfsnet import cfsnet_main
from ctl_jax.nets.dcgan import dcgan_generator
from ctl_jax.nets.decouple_net import decouple_net
from ctl_jax.nets.dncnn import dncnn
from ctl_jax.nets.drn import drn
from ctl_jax.nets.ffdnet import ffdnet
from ctl_jax.nets.rdn import rdn
from ctl_jax.nets.rednet import rednet
from ctl_jax.nets.rrdb import rrdb_net
from ctl_jax.nets.transform_net import transform_net

FACTORIES = {
    "adafm_net": lambda variant, **kw: adafm_net(variant or "paper", **kw),
    "cfsnet": lambda variant, **kw: cfsnet_main(variant or "cfsnet10", **kw),
    "dncnn": lambda variant, **kw: dncnn(variant, **kw),
    "decouple_net": lambda variant, **kw: decouple_net(variant or "paper", **kw),
    # no variant: the paper network for the channel count ("gray" for 1 channel, else "color")
    "ffdnet": lambda variant, **kw: ffdnet(variant or ("gray" if kw.get("channels") == 1 else "color"), **kw),
    # no variant: RED-Net 30; the variant sets the input skip (residual=True here only adds one)
    "rednet": lambda variant, **kw: rednet(variant, **kw),
    "transform_net": lambda variant, **kw: transform_net(variant, **kw),  # no variant: "paper"
    # super-resolution families: NetworkSpec.upscale is their scale (x1 is refused by the network)
    "rdn": lambda variant, upscale=1, **kw: rdn(variant, upscale=upscale, **kw),
    "rrdb": lambda variant, upscale=1, **kw: rrdb_net(variant, upscale=upscale, **kw),
    "drn": lambda variant, upscale=1, **kw: drn(variant, upscale=upscale, **kw),
    "dcgan": lambda variant, **kw: dcgan_generator(variant, **kw),  # no variant: "small"; input is noise
}
SUPER_RESOLUTION = ("rdn", "rrdb", "drn")


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A base network: family name, variant of its VARIANTS table, channels, AdaFM slot size,
    constant gamma input channels."""

    name: str = "adafm_net"
    variant: str | None = None
    channels: int = 3
    adafm_kernel: int | None = None
    condition_channels: int = 0  # decouple_net only: baseline [18]'s gamma input channels
    residual: bool = False       # adafm_net, decouple_net, ffdnet, rednet: add the input image to the output
    upscale: int = 1             # adafm_net, cfsnet, rdn, rrdb, drn: super-resolution output scale

    def build(self):
        if self.name not in FACTORIES:
            raise ValueError(f"unknown network {self.name!r}; choose one of {sorted(FACTORIES)}")
        extra = {k: v for k, v in (("condition_channels", self.condition_channels), ("residual", self.residual),
                                   ("upscale", self.upscale if self.upscale != 1 else 0)) if v}
        return FACTORIES[self.name](self.variant, channels=self.channels, adafm_kernel=self.adafm_kernel, **extra)

    @property
    def input_multiple(self) -> int:
        """Input heights and widths must be multiples of this: 4 for Transform-Net (two stride-2
        convs), 1 for the super-resolution AdaFM-Net, 2 for the others (stride-2 bodies, FFDNet's
        pixel unshuffle), 1 for the other super-resolution networks. ``ctl-jax apply`` pads to it
        and crops back."""
        if self.name == "transform_net":
            return 4
        return 1 if self.upscale != 1 or self.name in SUPER_RESOLUTION else 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        return cls(**d)
