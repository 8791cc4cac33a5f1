"""The first-boot user-data as a component (rendering/first_boot.py renders it)."""

from __future__ import annotations

import hashlib
from typing import Optional

import pulumi

from rendering.first_boot import EC2_USER_DATA_LIMIT, USER_DATA_BUDGET, render_cloud_config

class AgentBootstrap(pulumi.ComponentResource):
    """The first-boot user-data: fetch and run the stack's configuration document."""

    def __init__(self, name: str, document_parameter: str,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:host:AgentBootstrap", name, None, opts)
        self.user_data = render_cloud_config(document_parameter)
        size = len(self.user_data.encode())
        if size > USER_DATA_BUDGET:
            raise ValueError(f"user-data is {size} bytes; the budget is {USER_DATA_BUDGET} "
                             f"(70 % of EC2's {EC2_USER_DATA_LIMIT})")
        self.register_outputs({
            "userDataBytes": size,
            "userDataSha256": hashlib.sha256(self.user_data.encode()).hexdigest(),
        })
