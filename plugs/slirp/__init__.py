"""pyvde-slirp: a user-mode NAT router on a VDE network."""
