"""What every component of the program shares: one type-token scheme, and its former tokens.

A component's type token is `observability-lab:<module>:<Class>`, `<module>` being the
components/ module that defines it (camelCase). A component whose token changed lists
the tokens it had in `former_types`: they become aliases, so a stack created with an
older token keeps the component and, through it, every child's URN (the engine carries
a parent's aliases to its children): nothing is replaced.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import pulumi

from settings.declare import PROJECT


def type_token(component: type) -> str:
    first, *rest = component.__module__.rsplit(".", 1)[-1].split("_")
    return f"{PROJECT}:{first}{''.join(word.title() for word in rest)}:{component.__name__}"


class Component(pulumi.ComponentResource):
    former_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        aliases = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=former) for former in self.former_types])
        super().__init__(type_token(type(self)), name, None, pulumi.ResourceOptions.merge(aliases, opts))
        # Every child's options: parented here (its URN follows the component's).
        self.child = pulumi.ResourceOptions(parent=self)
