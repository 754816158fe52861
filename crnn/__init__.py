"""crnn: a reference implementation of Elman recurrent neural networks."""
