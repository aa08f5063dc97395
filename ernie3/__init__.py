"""ERNIE 3.0 light-weight models: fine-tune, compress and deploy with one task core."""
from ernie3 import compat

# Must run before the first `import paddle` anywhere in the process.
compat.configure_environment()
