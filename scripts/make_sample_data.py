"""Regenerate the demo samples in ernie3/samples/ (TNEWS format). Deterministic; written by the team.

Titles are composed from per-category topic words and neutral templates, so a small model can learn them.
    python scripts/make_sample_data.py
"""
import json
import os
import random

CATEGORIES = {
    ("103", "news_sports"): ["足球", "篮球", "比赛", "冠军", "球队", "联赛", "进球", "教练", "球员", "世界杯"],
    ("104", "news_finance"): ["银行", "投资", "经济", "利率", "基金", "理财", "贷款", "财报", "市场", "融资"],
    ("107", "news_car"): ["汽车", "新车", "发动机", "车型", "油耗", "轿车", "驾驶", "车主", "电动车", "底盘"],
    ("108", "news_edu"): ["高考", "学校", "学生", "老师", "教育", "考试", "大学", "课程", "家长", "招生"],
    ("109", "news_tech"): ["手机", "芯片", "互联网", "人工智能", "科技", "软件", "电脑", "数据", "网络", "机器人"],
    ("116", "news_game"): ["游戏", "玩家", "英雄", "副本", "装备", "手游", "电竞", "关卡", "角色", "排位"],
}
TEMPLATES = [
    "{a}和{b}成为今年最大的看点",
    "为什么说{a}离不开{b}？",
    "{a}又出新消息，{b}怎么看",
    "关于{a}，你需要知道的{b}细节",
    "{a}迎来变化，{b}值得关注",
    "一文读懂{a}与{b}",
    "{a}的{b}问题，专家这样说",
    "{a}最新动态：{b}持续升温",
]


def make(count: int, rng: random.Random, with_label: bool, start_id: int = 0) -> list[dict]:
    records = []
    categories = list(CATEGORIES.items())
    for index in range(count):
        (label, desc), words = categories[index % len(categories)]
        a, b = rng.sample(words, 2)
        record = {"label": label, "label_desc": desc, "sentence": rng.choice(TEMPLATES).format(a=a, b=b), "keywords": f"{a},{b}"}
        if not with_label:
            record = {"id": start_id + index, "sentence": record["sentence"], "keywords": record["keywords"]}
        records.append(record)
    rng.shuffle(records)
    return records


def main() -> None:
    rng = random.Random(20261124)
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ernie3", "samples", "tnews")
    os.makedirs(out, exist_ok=True)
    for name, count, with_label in (("train", 240, True), ("dev", 60, True), ("test", 24, False)):
        with open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8") as handle:
            for record in make(count, rng, with_label):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
