"One module per distillation method, each exported from its notebook `nbs/1x_<method>.ipynb`."
