"""The EVM anchoring client (:mod:`ledger.evm.anchor`) and its contract.

:data:`RECURSION_LIMIT` is the process's recursion limit when this package was first imported,
before :mod:`ledger.evm.anchor` loads web3: web3 imports py_ecc, which raises the limit to 100,000
as a side effect, and with it a deep recursion anywhere in the process (a JSON decoder, a repr)
overflows the C stack and kills the process instead of raising RecursionError.  ``anchor`` puts
the limit back once web3 is loaded.
"""

import sys

RECURSION_LIMIT = sys.getrecursionlimit()
