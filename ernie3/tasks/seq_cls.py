"""Sequence classification: the seven CLUE classification tasks."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ernie3.tasks.base import Encoded, RecordError, Task, check_text, kind_of, text_field

TextReader = Callable[[Mapping[str, Any]], tuple[str, Optional[str]]]


class SeqClsTask(Task):
    task_type = "seq_cls"
    metric_name = "accuracy"
    architecture_suffix = "ForSequenceClassification"
    windowable = True
    augmentable = True

    def __init__(
        self,
        name: str,
        labels: tuple[str, ...],
        read_texts: TextReader,
        label_descriptions: Optional[Mapping[str, str]] = None,
        unlabeled_marker: Optional[str] = None,
        pair: bool = False,
        samples: Sequence[Any] = (),
    ):
        super().__init__(name, labels, online_dataset=("clue", name))
        self.read_texts = read_texts
        #: whether every input is two texts (AFQMC, NLI, CSL) or one (TNEWS, IFLYTEK, WSC)
        self.pair = pair
        self.label_descriptions = dict(label_descriptions or {})
        # NLI files mark rows without a gold label with "-"; CLUE and paddlenlp drop them.
        self.unlabeled_marker = unlabeled_marker
        self.samples = list(samples) or list(SAMPLE_PAIRS if pair else SAMPLE_TEXTS)

    @property
    def input_flags(self) -> dict[str, str]:
        flags = {"text": "an input text (repeatable)"}
        if self.pair:
            flags["text_pair"] = "the second text of each pair (repeatable, one per --text)"
        return flags

    def input_from_line(self, line: str) -> Any:
        """A line of an input file: the text, or for pair tasks `text<TAB>text_pair`."""
        if not self.pair:
            return line
        if "\t" not in line:
            raise RecordError(f"{self.name} classifies pairs of texts: expected text<TAB>text_pair")
        return line.split("\t", 1)

    def sample_inputs(self) -> list[Any]:
        return [list(sample) if isinstance(sample, tuple) else sample for sample in self.samples]

    def model_class(self) -> Any:
        from paddlenlp.transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def parse_record(self, record: Mapping[str, Any], with_label: bool) -> Optional[dict]:
        label = None
        if with_label:
            if "label" not in record:
                raise RecordError("missing field 'label'")
            if self.unlabeled_marker is not None and record["label"] == self.unlabeled_marker:
                return None
            label = self.label_index(record["label"])
        text_a, text_b = self.read_texts(record)
        example_id = record.get("id", record.get("idx"))
        return {"id": example_id, "text_a": text_a, "text_b": text_b, "label": label}

    def example_from_text(self, text: Any) -> dict:
        """An example from raw input: a string, or a [text, text_pair] pair for pair tasks."""
        if self.pair:
            if not (isinstance(text, (list, tuple)) and len(text) == 2 and all(isinstance(t, str) for t in text)):
                raise RecordError(f"{self.name} classifies pairs of texts: expected a [text, text_pair] pair of strings, "
                                  f"not {kind_of(text)}")
            pieces: tuple = tuple(text)
        elif isinstance(text, str):
            pieces = (text, None)
        else:
            raise RecordError(f"{self.name} classifies single texts: expected a text string, not {kind_of(text)}")
        for position, piece in enumerate(pieces):
            if piece is not None:
                check_text(piece, f"text {position + 1}")
        return {"id": None, "text_a": pieces[0], "text_b": pieces[1], "label": None}

    def augment_example(self, example: Mapping[str, Any], augment: Callable[[str, bool], str]) -> dict:
        """Each text augmented on its own (both texts of a pair, as Tang et al. do); the label is a placeholder."""
        text_b = example.get("text_b")
        return {**example, "text_a": augment(example["text_a"], True),
                "text_b": augment(text_b, True) if text_b is not None else None}  # fmt: skip

    def window_texts(self, example: Mapping[str, Any]) -> tuple[Optional[str], str]:
        """A single text is windowed; of a pair (CSL: keywords, abstract) the first stays whole, the second is."""
        if example.get("text_b") is None:
            return None, example["text_a"]
        return example["text_a"], example["text_b"]

    def convert_example(self, example: Mapping[str, Any], tokenizer: Any, max_seq_length: int) -> dict:
        """Tokenize one example; texts longer than `max_seq_length` tokens are truncated."""
        encoded = tokenizer(
            text=example["text_a"],
            text_pair=example["text_b"],
            max_length=max_seq_length,
            truncation=True,
            return_attention_mask=False,
        )
        features = {"input_ids": encoded["input_ids"], "token_type_ids": encoded["token_type_ids"]}
        if example.get("label") is not None:
            features["labels"] = example["label"]
        return features

    def compute_metrics(self, eval_prediction: Any) -> dict:
        predictions = np.asarray(eval_prediction.predictions)
        label_ids = np.asarray(eval_prediction.label_ids).reshape(-1)
        return {"accuracy": float((predictions.argmax(axis=-1) == label_ids).mean())}

    def metrics_function(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded) -> Any:
        # each feature carries its label, so accuracy needs nothing but the Trainer's label_ids
        return self.compute_metrics

    def decode(self, examples: Sequence[Mapping[str, Any]], encoded: Encoded, outputs: Sequence[np.ndarray]) -> list[dict]:
        return self.postprocess(outputs[0])

    def score(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> dict:
        correct = sum(self.labels[e["label"]] == r["label"] for e, r in zip(examples, results))
        return {"accuracy": correct / len(examples)}

    def class_report(self, examples: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> list[dict]:
        from sklearn.metrics import precision_recall_fscore_support

        gold = [self.labels[example["label"]] for example in examples]
        predicted = [result["label"] for result in results]
        precision, recall, f1, support = precision_recall_fscore_support(
            gold, predicted, labels=list(self.labels), zero_division=0
        )
        rows = []
        for index, label in enumerate(self.labels):
            row = {"class": label, "precision": float(precision[index]), "recall": float(recall[index]),
                   "f1": float(f1[index]), "support": int(support[index])}  # fmt: skip
            if label in self.label_descriptions:
                row["name"] = self.label_descriptions[label]
            rows.append(row)
        return rows

    def postprocess(self, logits: np.ndarray) -> list[dict]:
        """Logits of a batch → label, its description (if the task has one), and its probability."""
        logits = np.asarray(logits, dtype=np.float64)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        results = []
        for row in probs:
            index = int(row.argmax())
            label = self.labels[index]
            result = {"label": label, "score": float(row[index])}
            if label in self.label_descriptions:
                result["label_desc"] = self.label_descriptions[label]
            results.append(result)
        return results

    def prediction_record(self, position: int, example: Mapping[str, Any], result: Mapping[str, Any]) -> dict:
        """A CLUE submission line: the example id (or its position) and the predicted label."""
        return {"id": example["id"] if example["id"] is not None else position, "label": result["label"]}

    def answer(self, output: dict) -> Any:
        return output["label"]



def single_sentence(record: Mapping[str, Any]) -> tuple[str, Optional[str]]:
    return text_field(record, "sentence"), None


def sentence_pair(record: Mapping[str, Any]) -> tuple[str, Optional[str]]:
    return text_field(record, "sentence1"), text_field(record, "sentence2")


def csl_texts(record: Mapping[str, Any]) -> tuple[str, Optional[str]]:
    """CSL: the keyword list joined by spaces is the first text, the abstract the second."""
    keywords = record.get("keyword")
    if keywords is None:
        raise RecordError("missing field 'keyword'")
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise RecordError("field 'keyword' must be a list of strings")
    joined = " ".join(k.strip() for k in keywords if k.strip())
    if not joined:
        raise RecordError("field 'keyword' is empty")
    return joined, text_field(record, "abst")


def wsc_texts(record: Mapping[str, Any]) -> tuple[str, Optional[str]]:
    """CLUEWSC2020: wrap the query span in _…_ and the pronoun in […], as PaddleNLP's ERNIE 3.0 recipe does."""
    text = text_field(record, "text")
    target = record.get("target")
    if not isinstance(target, Mapping):
        raise RecordError("missing field 'target' (an object with span1_index/span1_text/span2_index/span2_text)")
    spans = []
    for number in (1, 2):
        index_key, text_key = f"span{number}_index", f"span{number}_text"
        index, span = target.get(index_key), target.get(text_key)
        if not isinstance(index, int) or isinstance(index, bool):
            raise RecordError(f"field 'target.{index_key}' must be an integer")
        if not isinstance(span, str) or not span:
            raise RecordError(f"field 'target.{text_key}' must be a non-empty string")
        if text[index : index + len(span)] != span:
            raise RecordError(f"'target.{text_key}' ({span!r}) does not occur at target.{index_key}={index} in 'text'")
        spans.append((index, span))
    (query_index, query), (pronoun_index, pronoun) = spans
    # (position, opens, mark); inserting right to left keeps earlier positions valid, and at one position
    # the opening mark goes in first so that a closing mark there ends up before it.
    marks = [
        (query_index, True, "_"), (query_index + len(query), False, "_"),
        (pronoun_index, True, "["), (pronoun_index + len(pronoun), False, "]"),
    ]  # fmt: skip
    pieces = list(text)
    for position, _opens, mark in sorted(marks, reverse=True):
        pieces.insert(position, mark)
    return "".join(pieces), None


# Raw inputs the load test sends by default: made-up TNEWS-like headlines, and AFQMC-like question pairs.
SAMPLE_TEXTS = (
    "上赛季的冠军球队今晚主场迎战老对手", "新款手机搭载自研芯片，续航提升三成", "央行宣布下调存款准备金率",
    "这部电影的票房在国庆档突破十亿", "多地出台政策支持新能源汽车消费", "高考志愿填报有哪些需要注意的地方",
    "这款游戏的新版本上线后玩家数量大增", "房价连续三个月环比下降",
)  # fmt: skip
SAMPLE_PAIRS = (
    ("花呗怎么还款", "花呗如何还钱"), ("借呗可以提前还吗", "借呗能不能提前还款"), ("花呗账单什么时候出", "怎么开通借呗"),
    ("余额宝的收益怎么算", "蚂蚁森林怎么浇水"),
)  # fmt: skip

TNEWS_DESCRIPTIONS = {
    "100": "news_story", "101": "news_culture", "102": "news_entertainment", "103": "news_sports",
    "104": "news_finance", "106": "news_house", "107": "news_car", "108": "news_edu", "109": "news_tech",
    "110": "news_military", "112": "news_travel", "113": "news_world", "114": "news_stock",
    "115": "news_agriculture", "116": "news_game",
}  # fmt: skip

# the official CLUE IFLYTEK label names (labels.json of iflytek_public.zip), by label id
IFLYTEK_DESCRIPTIONS = {
    "0": "打车", "1": "地图导航", "2": "免费WIFI", "3": "租车", "4": "同城服务", "5": "快递物流", "6": "婚庆", "7": "家政", "8": "公共交通",
    "9": "政务", "10": "社区服务", "11": "薅羊毛", "12": "魔幻", "13": "仙侠", "14": "卡牌", "15": "飞行空战", "16": "射击游戏",
    "17": "休闲益智", "18": "动作类", "19": "体育竞技", "20": "棋牌中心", "21": "经营养成", "22": "策略", "23": "MOBA", "24": "辅助工具",
    "25": "约会社交", "26": "即时通讯", "27": "工作社交", "28": "论坛圈子", "29": "婚恋社交", "30": "情侣社交", "31": "社交工具", "32": "生活社交",
    "33": "微博博客", "34": "新闻", "35": "漫画", "36": "小说", "37": "技术", "38": "教辅", "39": "问答交流", "40": "搞笑", "41": "杂志",
    "42": "百科", "43": "影视娱乐", "44": "求职", "45": "兼职", "46": "视频", "47": "短视频", "48": "音乐", "49": "直播", "50": "电台",
    "51": "K歌", "52": "成人", "53": "中小学", "54": "职考", "55": "公务员", "56": "英语", "57": "视频教育", "58": "高等教育",
    "59": "成人教育", "60": "艺术", "61": "语言(非英语)", "62": "旅游资讯", "63": "综合预定", "64": "民航", "65": "铁路", "66": "酒店",
    "67": "行程管理", "68": "民宿短租", "69": "出国", "70": "工具", "71": "亲子儿童", "72": "母婴", "73": "驾校", "74": "违章",
    "75": "汽车咨询", "76": "汽车交易", "77": "日常养车", "78": "行车辅助", "79": "租房", "80": "买房", "81": "装修家居", "82": "电子产品",
    "83": "问诊挂号", "84": "养生保健", "85": "医疗服务", "86": "减肥瘦身", "87": "美妆美业", "88": "菜谱", "89": "餐饮店", "90": "体育咨讯",
    "91": "运动健身", "92": "支付", "93": "保险", "94": "股票", "95": "借贷", "96": "理财", "97": "彩票", "98": "记账", "99": "银行",
    "100": "美颜", "101": "影像剪辑", "102": "摄影修图", "103": "相机", "104": "绘画", "105": "二手", "106": "电商", "107": "团购",
    "108": "外卖", "109": "电影票务", "110": "社区超市", "111": "购物咨询", "112": "笔记", "113": "办公", "114": "日程管理", "115": "女性",
    "116": "经营", "117": "收款", "118": "其他",
}  # fmt: skip

# Label orders follow paddlenlp's `clue` dataset so online (label index) and local (label text) data agree.
TASKS = (
    SeqClsTask("afqmc", ("0", "1"), sentence_pair, pair=True),
    SeqClsTask("tnews", tuple(TNEWS_DESCRIPTIONS), single_sentence, label_descriptions=TNEWS_DESCRIPTIONS),
    SeqClsTask("iflytek", tuple(IFLYTEK_DESCRIPTIONS), single_sentence, label_descriptions=IFLYTEK_DESCRIPTIONS),
    SeqClsTask("cmnli", ("contradiction", "entailment", "neutral"), sentence_pair, unlabeled_marker="-", pair=True),
    SeqClsTask("ocnli", ("entailment", "contradiction", "neutral"), sentence_pair, unlabeled_marker="-", pair=True),
    SeqClsTask("cluewsc2020", ("true", "false"), wsc_texts),
    SeqClsTask("csl", ("0", "1"), csl_texts, pair=True),
)
