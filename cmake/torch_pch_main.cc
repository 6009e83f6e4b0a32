// Host translation unit for the executables' <torch/torch.h> precompiled header.
int main() { return 0; }
