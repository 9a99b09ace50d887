"""The modules of tools/plot.py, which draws kimi-lab runs: reading run directories into settings
(runs, mixers), the drawing helpers every figure shares (figures), and one module per kind of
figure (curves, accuracy_length, figure4)."""
