"""Serve an export directory over TensorFlow Serving's REST API (same flags as the module).

    python scripts/serve.py --model_name taxi --model_base_path runs/taxi/export/latest --port 8501
"""

from __future__ import annotations

from estimator.serving.__main__ import main

if __name__ == "__main__":
    main()
