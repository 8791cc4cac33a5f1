"""Run the Pulumi program without a cloud: Pulumi's in-process mock engine."""
