"""Tiny PyTorch models for the intake tests (module:callable form)."""
import torch
from torch import nn


def make_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


def not_a_module():
    return 42
