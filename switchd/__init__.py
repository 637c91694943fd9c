"""pyvde-switch: a VDE-compatible Ethernet switch with a C data plane.

What this package offers (one module per concern, named for it):
  cli              the `pyvde-switch` command
  options          vde_switch's command line, parsed
  switch           the switch: wiring and lifetime
  control_request  the control request/reply, pure parse and build
  control_socket   the control directory, `ctl`, handshake and data sockets
  ports            ports, endpoints, allocation, port/* commands
  mac_table        hash/* commands over the C MAC table
  dataplane        the handle on the C forwarding engine
  console          the console protocol, pure; mgmt_socket serves it
  permissions      modes and owners of the switch's files
  daemon           logging, daemonizing, pid file
"""
