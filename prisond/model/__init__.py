"""What prisond is told and says: the configuration and its parameters, states, errors, the
contract with the C side and the control protocol.  Pure: no I/O but reading a file."""
