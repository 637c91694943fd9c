"""pyvde-cable: a VDE switch port carried over UDP (sealed, plain, VXLAN or VXVDE)."""
