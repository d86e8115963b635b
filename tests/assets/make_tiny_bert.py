"""tests/assets/tiny_bert.onnx: a Hugging Face BertForSequenceClassification (random weights, hidden 32, 1
layer, vocabulary 100, 8 tokens) exported with torch.onnx (TorchScript exporter, opset 17), its inputs token ids
and an attention mask. Run from the repo root with transformers installed (not a dependency of edgeopt)."""
import sys

import torch
from transformers import BertConfig, BertForSequenceClassification


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=16, num_labels=3)
        self.bert = BertForSequenceClassification(config)

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits


torch.manual_seed(0)
model = Classifier().eval()
ids = torch.randint(0, 100, (1, 8))
mask = torch.ones(1, 8, dtype=torch.long)
torch.onnx.export(model, (ids, mask), sys.argv[1] if len(sys.argv) > 1 else "tests/assets/tiny_bert.onnx",
                  input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17,
                  dynamo=False)
