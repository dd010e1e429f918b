"""``python -m ecma_basicsr.race``: the same as ``basicsr race`` (:mod:`ecma_basicsr.race.run`)."""
import sys

from ecma_basicsr.errors import UserError
from ecma_basicsr.race.run import main

if __name__ == '__main__':
    try:
        sys.exit(main())
    except UserError as err:
        print(f'python -m ecma_basicsr.race: error: {err}', file=sys.stderr)
        sys.exit(1)
