"""Regenerate the demo samples in ernie3/samples/. Deterministic; every name and sentence is made up by the team.

- tnews: titles composed from per-category topic words and neutral templates (CLUE JSON lines);
- msra_ner: sentences from templates with made-up people, organisations and places (paddlenlp's MSRA format:
  characters joined by \x02, a TAB, BIO tags joined by \x02; the test split has no tags);
- cmrc2018: paragraphs about made-up towns with questions whose answers are spans (SQuAD-style JSON).
The patterns are regular so that a small randomly initialised model can learn them. Each file is read back through
its task's own reader afterwards (the recipes write the formats; the tasks say whether they are right).
    python scripts/make_sample_data.py
"""
import json
import os
import random

from ernie3.data import SAMPLES_DIR, load_examples, sample_file
from ernie3.tasks import get_task

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


# -- msra_ner -----------------------------------------------------------------------------------------------------

NER_NAMES = {
    "PER": ["张明远", "李晓红", "王建国", "陈思远", "刘海燕", "赵文博", "孙丽华", "周志强", "吴家乐", "郑雨欣",
            "林东升", "黄美玲", "何立群", "高志远", "马小云", "罗晓峰"],
    "ORG": ["星河科技公司", "蓝海集团", "华新大学", "东方日报社", "青山医院", "远航物流公司", "明德中学",
            "长风银行", "绿洲研究所", "天元足球俱乐部", "晨光出版社", "百川电视台"],
    "LOC": ["北京", "上海", "杭州", "成都", "西安", "长江", "黄山", "青海湖", "广州", "南京", "武汉", "昆明",
            "太湖", "泰山", "厦门", "哈尔滨"],
}  # fmt: skip
NER_TEMPLATES = [
    "{PER}昨天在{LOC}参观了{ORG}。",
    "{ORG}宣布将在{LOC}建立新的研发中心。",
    "据{ORG}报道，{PER}上周抵达{LOC}。",
    "{PER}和{PER}一起从{LOC}出发前往{LOC}。",
    "{LOC}{ORG}的负责人{PER}接受了采访。",
    "今年夏天，{PER}将在{LOC}举办个人画展。",
    "{ORG}与{ORG}签署了合作协议。",
    "来自{LOC}的{PER}加入了{ORG}。",
    "天气转凉，{LOC}的游客明显减少。",
    "会议结束后，{PER}表示对结果很满意。",
    "这是一个晴朗的早晨，大家都很开心。",
    "{PER}昨天在{LOC}参观了{ORG}，随后又与{ORG}的{PER}在{LOC}共进午餐，双方就未来三年的合作进行了深入交流。",
]


def ner_sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """Characters and BIO tags of one sentence from a random template."""
    chars, tags = [], []
    template = rng.choice(NER_TEMPLATES)
    pieces = template.replace("}", "{").split("{")  # text, slot, text, slot, ...
    for position, piece in enumerate(pieces):
        if position % 2 == 0:
            chars += list(piece)
            tags += ["O"] * len(piece)
        else:
            name = rng.choice(NER_NAMES[piece])
            chars += list(name)
            tags += [f"B-{piece}"] + [f"I-{piece}"] * (len(name) - 1)
    return chars, tags


def write_msra_ner(rng: random.Random) -> None:
    out = os.path.join(SAMPLES_DIR, "msra_ner")
    os.makedirs(out, exist_ok=True)
    for name, count, with_tags in (("train", 300, True), ("dev", 60, True), ("test", 30, False)):
        with open(os.path.join(out, f"{name}.tsv"), "w", encoding="utf-8") as handle:
            for _ in range(count):
                chars, tags = ner_sentence(rng)
                line = "\x02".join(chars) + ("\t" + "\x02".join(tags) if with_tags else "")
                handle.write(line + "\n")


# -- cmrc2018 -----------------------------------------------------------------------------------------------------

TOWN_FIRST = list("青白云金玉石松竹梅兰清碧")
TOWN_SECOND = list("岚鹭川沙溪峰湾桥泉港林原")
COUNTRIES = ["南岳国", "北陵国", "东澜国", "西原国"]
RIVERS = ["清水河", "碧江", "金沙河", "玉带河", "白马河", "青龙江"]
PRODUCTS = ["丝绸", "茶叶", "瓷器", "柑橘", "竹编", "米酒", "铜器", "刺绣"]
FESTIVALS = ["灯会", "龙舟节", "花市", "茶会", "庙会", "风筝节"]
# (paragraph sentences in order, questions): the same facts in two orders, so answers are not tied to positions
QA_PARAGRAPHS = [
    ["{town}是{country}的一座城市，位于{river}下游。", "全市人口约{pop}万，面积{area}平方公里。",
     "{town}建于{year}年，当地以{product}闻名。", "每年{month}月，{town}都会举办盛大的{festival}。"],
    ["{town}建于{year}年，是{country}历史最悠久的城市之一。", "每年{month}月，这里都会举办{festival}。",
     "{town}位于{river}下游，全市人口约{pop}万。", "当地以{product}闻名，面积约{area}平方公里。"],
]  # fmt: skip
QA_QUESTIONS = [
    ("{town}位于哪条河的下游？", "{river}"),
    ("{town}的人口约有多少？", "{pop}万"),
    ("{town}建于哪一年？", "{year}年"),
    ("{town}以什么闻名？", "{product}"),
    ("{town}每年几月举办{festival}？", "{month}月"),
    ("{town}是哪个国家的城市？", "{country}"),
]


def qa_article(rng: random.Random, town: str, prefix: str) -> dict:
    facts = {
        "town": town, "country": rng.choice(COUNTRIES), "river": rng.choice(RIVERS), "pop": rng.randint(12, 980),
        "area": rng.randint(150, 9800), "year": rng.randint(1050, 1890), "product": rng.choice(PRODUCTS),
        "month": rng.randint(1, 12), "festival": rng.choice(FESTIVALS),
    }  # fmt: skip
    context = "".join(sentence.format(**facts) for sentence in rng.choice(QA_PARAGRAPHS))
    questions = []
    for number, (question, answer) in enumerate(QA_QUESTIONS):
        text = answer.format(**facts)
        # the answer's first occurrence after the town name's first mention, as an annotator would mark it
        start = context.find(text, len(town) if text != town else 0)
        assert start >= 0, (context, text)
        questions.append({"id": f"{prefix}_QUERY_{number}", "question": question.format(**facts),
                          "answers": [{"text": text, "answer_start": start}]})  # fmt: skip
    return {"id": prefix, "title": town, "paragraphs": [{"id": prefix, "context": context, "qas": questions}]}


def write_cmrc2018(rng: random.Random) -> None:
    out = os.path.join(SAMPLES_DIR, "cmrc2018")
    os.makedirs(out, exist_ok=True)
    towns = [first + second + "市" for first in TOWN_FIRST for second in TOWN_SECOND]
    rng.shuffle(towns)
    for name, count in (("train", 64), ("dev", 12)):
        chosen, towns = towns[:count], towns[count:]  # dev towns never occur in train
        articles = [qa_article(rng, town, f"SAMPLE_{name.upper()}_{index}") for index, town in enumerate(chosen)]
        with open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8") as handle:
            json.dump({"version": "sample", "data": articles}, handle, ensure_ascii=False, indent=1)
            handle.write("\n")


def main() -> None:
    rng = random.Random(20261124)
    out = os.path.join(SAMPLES_DIR, "tnews")
    os.makedirs(out, exist_ok=True)
    for name, count, with_label in (("train", 240, True), ("dev", 60, True), ("test", 24, False)):
        with open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8") as handle:
            for record in make(count, rng, with_label):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    write_msra_ner(random.Random(20261125))
    write_cmrc2018(random.Random(20261126))
    # every file must read back through its task's own reader and checks, as training and the demo read it
    for task_name in sorted(os.listdir(SAMPLES_DIR)):
        for split in ("train", "dev", "test"):
            path = sample_file(task_name, split)
            if path:
                examples = load_examples(get_task(task_name), split, path)
                print(f"{path}: {len(examples)} {task_name} {split} examples")


if __name__ == "__main__":
    main()
