"""A phone farm on Ray: every attached phone is a Ray custom resource ``phone:<serial>``.

``python -m android_runtime.farm join --address HEAD`` starts a Ray worker node on a host with
phones (``node``), publishes each phone's labels (model, SoC, Android version) in the cluster's
key-value store and takes a phone's resource away while it is gone. ``phones`` holds the pure
parts (resource names, labels, what a config's ``DEPLOY.PHONE`` matches). ``pipeline.farm`` is
the driver that dispatches configs to phones. User docs: android_runtime/FARM.md.
"""
