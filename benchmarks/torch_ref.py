"""Plain PyTorch reference of the model and the UGradSL step (for timing only).

Mirrors ugradsl_jax.models / unlearn: ResNet-18 CIFAR variant on uint8 NHWC
input with normalisation inside the model, crop (pad 4) + flip on the batch,
retain CE and forget NLS-CE gradients computed separately and mixed as
p * g_r - (1 - p) * g_f, SGD momentum 0.9 with coupled weight decay 5e-4,
BatchNorm in train mode (retain forward, then forget forward).

  python -m benchmarks.torch_ref --width 16 --batch 64   # a quick self-check
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class BasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout, momentum=0.1)  # torch momentum 0.1 == flax 0.9
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.short = None
    if stride != 1 or cin != cout:
      self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                 nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet18(nn.Module):
  """Takes uint8 [B, 32, 32, 3]; returns float32 logits [B, classes]."""

  def __init__(self, width: int = 64, num_classes: int = 10, channels_last=True):
    super().__init__()
    self.channels_last = channels_last
    self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255)
    self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255)
    self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
    self.bn = nn.BatchNorm2d(width)
    blocks, cin = [], width
    for i in range(4):
      cout = width * 2**i
      for j in range(2):
        blocks.append(BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(cin, num_classes)
    for m in self.modules():  # He fan-out init, as the JAX model
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x_u8):
    # NHWC uint8 -> NCHW view; channels_last keeps NHWC memory (oneDNN's fast path).
    x = x_u8.permute(0, 3, 1, 2).float()
    x = (x - self.mean) / self.std
    x = x.contiguous(memory_format=torch.channels_last if self.channels_last
                     else torch.contiguous_format)
    x = F.relu(self.bn(self.stem(x)))
    x = self.blocks(x)
    return self.fc(x.mean((2, 3)))


def crop_flip(x_u8: torch.Tensor, pad: int = 4):
  """Random crop with zero padding + horizontal flip of a uint8 NHWC batch,
  as one gather (index tensors live on the batch's device)."""
  b, h, w, _ = x_u8.shape
  dev = x_u8.device
  padded = F.pad(x_u8, (0, 0, pad, pad, pad, pad))
  dy = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=dev)
  dx = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=dev)
  flip = torch.rand(b, 1, 1, device=dev) < 0.5
  rows = torch.arange(h, device=dev).view(1, h, 1) + dy
  cols = torch.arange(w, device=dev).view(1, 1, w)
  cols = torch.where(flip, w - 1 - cols, cols) + dx
  return padded[torch.arange(b, device=dev).view(b, 1, 1), rows, cols]


def smoothed_ce(logits, y, alpha: float):
  """CE against (1 - alpha) * onehot + alpha / K (alpha < 0: NLS); torch's
  label_smoothing argument only takes alpha in [0, 1], so written out."""
  k = logits.shape[-1]
  t = (1 - alpha) * F.one_hot(y, k).float() + alpha / k
  return -(t * F.log_softmax(logits.float(), -1)).sum(-1).mean()


class Stepper:
  """Holds model, optimizer and device-resident data; one call = one step."""

  def __init__(self, width: int, data_x, data_y, *, lr=2e-3, alpha=-1.0, p=0.5,
               augment=True, channels_last=True, autocast_dtype=None, device="cpu",
               seed=0, compile=False):
    torch.manual_seed(seed)
    self.device = device
    self.model = ResNet18(width, channels_last=channels_last).to(device)
    if channels_last:
      self.model = self.model.to(memory_format=torch.channels_last)
    self.model.train()
    # torch.compile (TorchInductor) of the model: forward and backward become
    # generated kernels; the gradient mixing and SGD stay eager, as in JAX's
    # step they are a small share of the time.
    self.forward = torch.compile(self.model) if compile else self.model
    self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9,
                               weight_decay=5e-4)
    self.params = [q for q in self.model.parameters()]
    self.x = torch.as_tensor(data_x).to(device)
    self.y = torch.as_tensor(data_y).long().to(device)
    self.alpha, self.p, self.augment = alpha, p, augment
    self.autocast_dtype = autocast_dtype

  def _batch(self, idx):
    idx = torch.as_tensor(idx, device=self.device)
    x = self.x[idx]
    if self.augment:
      x = crop_flip(x)
    return x, self.y[idx]

  def _grads(self, x, y, loss_fn):
    with torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype,
                        enabled=self.autocast_dtype is not None):
      loss = loss_fn(self.forward(x), y)
    return loss, torch.autograd.grad(loss, self.params)

  def unlearn_step(self, retain_idx, forget_idx):
    """UGradSL: p * grad CE(retain) - (1 - p) * grad NLS-CE(forget), SGD."""
    l_r, g_r = self._grads(*self._batch(retain_idx), F.cross_entropy)
    l_f, g_f = self._grads(*self._batch(forget_idx),
                           lambda lo, y: smoothed_ce(lo, y, self.alpha))
    for q, r, f in zip(self.params, g_r, g_f):
      q.grad = self.p * r - (1 - self.p) * f
    self.opt.step()
    return self.p * l_r.detach() - (1 - self.p) * l_f.detach()

  def train_step(self, idx, loss_fn=F.cross_entropy, labels=None, mask=None):
    """Descent on loss_fn of one batch (FT: CE; GA: -CE; SalUn: CE on
    `labels` with the gradient multiplied by `mask`), SGD."""
    x, y = self._batch(idx)
    if labels is not None:
      y = labels[torch.as_tensor(idx, device=self.device)]
    loss, g = self._grads(x, y, loss_fn)
    for i, (q, gi) in enumerate(zip(self.params, g)):
      q.grad = gi if mask is None else gi * mask[i]
    self.opt.step()
    return loss.detach()

  def saliency_mask(self, forget_idx, ratio=0.5, batch=256):
    """SalUn: 1 where |grad of the summed forget CE| (eval-mode BN) is in the
    top `ratio` share over all weights, else 0."""
    self.model.eval()
    grads = [torch.zeros_like(q) for q in self.params]
    for s in range(0, len(forget_idx), batch):
      idx = torch.as_tensor(forget_idx[s:s + batch], device=self.device)
      loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx], reduction="sum")
      for acc, gi in zip(grads, torch.autograd.grad(loss, self.params)):
        acc += gi
    self.model.train()
    flat = torch.cat([g.abs().flatten() for g in grads])
    k = max(int(round(ratio * flat.numel())), 1)
    thresh = torch.topk(flat, k).values[-1]
    return [(g.abs() >= thresh).float() for g in grads]

  def sync(self):
    if self.device.startswith("cuda"):
      torch.cuda.synchronize()


def main(argv=None):
  a = argparse.ArgumentParser(description=__doc__)
  a.add_argument("--width", type=int, default=16)
  a.add_argument("--batch", type=int, default=64)
  a.add_argument("--steps", type=int, default=3)
  args = a.parse_args(argv)
  g = torch.Generator().manual_seed(0)
  x = torch.randint(0, 256, (4 * args.batch, 32, 32, 3), dtype=torch.uint8, generator=g)
  y = torch.randint(0, 10, (4 * args.batch,), generator=g)
  s = Stepper(args.width, x, y)
  for i in range(args.steps):
    t0 = time.perf_counter()
    loss = s.unlearn_step(torch.arange(args.batch), torch.arange(args.batch) + 2 * args.batch)
    dt = time.perf_counter() - t0
    print(f"step {i}: loss {float(loss):.4f}  {2 * args.batch / dt:.1f} img/s")


if __name__ == "__main__":
  main()
