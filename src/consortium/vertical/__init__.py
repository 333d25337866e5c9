"""Vertical federated learning: parties hold different columns of the same records.

A master holds the labels (and maybe columns), members hold columns, an optional arbiter
holds keys. The parties find their shared records with a private set intersection, then
train a model split by columns: linear or logistic regression (by gradient steps, or for
linear regression the exact least-squares/ridge solution) and split neural networks. What
each role can see is stated in :mod:`consortium.vertical.visibility`; how the programs are
built, one state machine per mode around what every mode shares, in
:mod:`consortium.vertical.modes`.
"""

from consortium.runtime import BINDERS as _BINDERS
from consortium.runtime import PROTOCOLS as _PROTOCOLS
from consortium.vertical import arbitered, exact, gradient  # noqa: F401 (each registers its mode)
from consortium.vertical.arbiter import Arbiter
from consortium.vertical.data import BINDER as _BINDER
from consortium.vertical.local import NET_KEY, TOP_KEY
from consortium.vertical.master import Master
from consortium.vertical.member import Member
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.models import MODELS, ModelKind
from consortium.vertical.parts import Bottom, Top
from consortium.vertical.settings import VerticalSettings
from consortium.vertical.splitnn import COMBINERS, NETS, build_net, central_network
from consortium.vertical.visibility import VISIBILITY, Visibility

_PROTOCOLS.register("vertical", VerticalSettings)
_BINDERS.register("vertical", _BINDER)

__all__ = [
    "COMBINERS",
    "MODELS",
    "NETS",
    "NET_KEY",
    "TOP_KEY",
    "VISIBILITY",
    "Arbiter",
    "Bottom",
    "Kind",
    "Master",
    "Member",
    "MemberStage",
    "ModelKind",
    "Top",
    "VerticalSettings",
    "Visibility",
    "build_net",
    "central_network",
]
