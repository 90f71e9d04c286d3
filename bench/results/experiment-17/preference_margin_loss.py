r"""preference_margin_loss: a preference-optimization loss discovered with `discovery` (LLM-driven loss search).

Candidate #11 "preference_margin_loss" of run /tmp/exp17h/runs/hybrid-seed1
(task synthetic, created 2026-12-04T17:50:55+00:00, git 99a9d29966db4bebe217e2d17ad898397cbcd086).

Thought (the proposer's rationale):
    -

Formula, with rho = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)):
    plain: log(1 + exp(-1/(1 + exp(-beta*(rho + 1/(2*beta))))))
    LaTeX: \log{\left(1 + e^{- \frac{1}{1 + e^{- \beta \left(\rho + \frac{1}{2 \beta}\right)}}} \right)}

Fitness on task synthetic: 0.0629 ± 0.0265 (n=9): 95% CI [0.0364, 0.0893], Student t, evaluations over seeds [0, 1, 2, 3, 4, 5, 6, 7, 8] x betas [0.0125, 0.05, 0.2] at full fidelity.
Selection: chosen by hand: candidate #11 (status evaluated).
Task config: {"cache_dir": null, "dataset": null, "dataset_split": "train", "eval_split": null, "max_samples": null, "model": null, "name": "synthetic", "options": {"edit_from_target": true, "edit_pairs": 1.0, "target_weight": 2}, "revision": null, "sft_dataset": null, "sft_eval_split": null, "sft_learning_rate": 2e-05, "sft_max_steps": -1, "sft_num_train_epochs": 1.0, "sft_split": "train"}
Training config: {"beta": 0.1, "bf16": false, "gradient_accumulation_steps": 1, "gradient_checkpointing": false, "learning_rate": 0.0005, "lora_alpha": 32, "lora_dropout": 0.05, "lora_r": 16, "lr_scheduler_type": "constant", "max_length": 64, "max_prompt_length": null, "max_steps": 128, "num_train_epochs": 1.0, "peft": false, "per_device_train_batch_size": 16, "threads": null, "truncation_mode": "keep_end", "warmup_ratio": 0.0, "weight_decay": 0.0}
Evaluation config: {"baselines": ["dpo", "slic", "ipo", "lrml"], "betas": [0.0125, 0.05, 0.2], "duplicate_distance": 0.001, "fitness": "best_beta", "heldout_instances": [], "judge": {"api_key_env": "OPENAI_API_KEY", "base_url": null, "cache_dir": null, "concurrency": 4, "max_retries": 3, "max_tokens": 2048, "model": "gpt-4", "prices": {}, "timeout": 120.0}, "mtbench_backend": "auto", "mtbench_max_new_tokens": 1024, "mtbench_questions": null, "mtbench_source": null, "paired_test": "t", "promote_fraction": 0.34, "racing": "paired_t", "racing_first_seeds": 3, "reeval_seeds": 5, "screen": true, "screen_seeds": 1, "screen_steps_fraction": 0.5, "seeds": 9, "vllm_gpu_memory_utilization": 0.9}
Versions when trained: {"accelerate": "1.16.0", "datasets": "5.2.0", "discovery": "0.1.0", "python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.25.0", "trl": "1.16.0"}
Versions when exported: {"accelerate": "1.16.0", "datasets": "5.2.0", "discovery": "0.1.0", "python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.25.0", "trl": "1.16.0"}
Exported 2026-12-04T19:01:28+00:00 by discovery 0.1.0; the full record is METADATA below.

Use with TRL (written for trl 1.16.0):

    from trl import DPOConfig
    from preference_margin_loss import make_dpo_trainer_class

    Trainer = make_dpo_trainer_class()
    trainer = Trainer(model=model, args=DPOConfig(output_dir="out", beta=0.1),
                      train_dataset=dataset, processing_class=tokenizer)
    trainer.train()

Or call the loss directly: `preference_margin_loss(policy_chosen_logps, policy_rejected_logps,
reference_chosen_logps, reference_rejected_logps, beta)` returns per-pair losses of shape (B,).

Self-test: `python preference_margin_loss.py` checks the loss and its gradients on the fingerprint probes
against the values computed (in the discovery sandbox) when it was exported.
"""

import torch
import torch.nn.functional as F


def preference_margin_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = F.sigmoid(beta * (margin + 1 / (2 * beta)))
    loss = -F.logsigmoid(logits)
    return loss


LOSS = preference_margin_loss

METADATA = {'candidate': {'code_hash': '0da28510eb80c160',
               'fingerprint': '17e8dd4d51681ccc',
               'generation': 7,
               'id': 11,
               'model': '/root/.cache/discovery-test/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf',
               'name': 'preference_margin_loss',
               'origin': 'llm',
               'parents': [7],
               'proposer': 'llamacpp',
               'status': 'evaluated'},
 'config': {'eval': {'baselines': ['dpo', 'slic', 'ipo', 'lrml'],
                     'betas': [0.0125, 0.05, 0.2],
                     'duplicate_distance': 0.001,
                     'fitness': 'best_beta',
                     'heldout_instances': [],
                     'judge': {'api_key_env': 'OPENAI_API_KEY',
                               'base_url': None,
                               'cache_dir': None,
                               'concurrency': 4,
                               'max_retries': 3,
                               'max_tokens': 2048,
                               'model': 'gpt-4',
                               'prices': {},
                               'timeout': 120.0},
                     'mtbench_backend': 'auto',
                     'mtbench_max_new_tokens': 1024,
                     'mtbench_questions': None,
                     'mtbench_source': None,
                     'paired_test': 't',
                     'promote_fraction': 0.34,
                     'racing': 'paired_t',
                     'racing_first_seeds': 3,
                     'reeval_seeds': 5,
                     'screen': True,
                     'screen_seeds': 1,
                     'screen_steps_fraction': 0.5,
                     'seeds': 9,
                     'vllm_gpu_memory_utilization': 0.9},
            'sandbox': {'allow_weak_isolation': False,
                        'cpu_seconds': 60,
                        'max_call_seconds': 0.25,
                        'max_file_mb': 16,
                        'max_open_files': 64,
                        'memory_mb': 2048,
                        'timeout': 20.0,
                        'train_file_mb': None,
                        'train_memory_mb': None,
                        'train_open_files': None,
                        'train_timeout': None},
            'seed': 0,
            'task': {'cache_dir': None,
                     'dataset': None,
                     'dataset_split': 'train',
                     'eval_split': None,
                     'max_samples': None,
                     'model': None,
                     'name': 'synthetic',
                     'options': {'edit_from_target': True, 'edit_pairs': 1.0, 'target_weight': 2},
                     'revision': None,
                     'sft_dataset': None,
                     'sft_eval_split': None,
                     'sft_learning_rate': 2e-05,
                     'sft_max_steps': -1,
                     'sft_num_train_epochs': 1.0,
                     'sft_split': 'train'},
            'train': {'beta': 0.1,
                      'bf16': False,
                      'gradient_accumulation_steps': 1,
                      'gradient_checkpointing': False,
                      'learning_rate': 0.0005,
                      'lora_alpha': 32,
                      'lora_dropout': 0.05,
                      'lora_r': 16,
                      'lr_scheduler_type': 'constant',
                      'max_length': 64,
                      'max_prompt_length': None,
                      'max_steps': 128,
                      'num_train_epochs': 1.0,
                      'peft': False,
                      'per_device_train_batch_size': 16,
                      'threads': None,
                      'truncation_mode': 'keep_end',
                      'warmup_ratio': 0.0,
                      'weight_decay': 0.0}},
 'diagnostics': {'batch_dependent': False,
                 'beta_first': True,
                 'call_seconds_b64': 0.00021408199972938746,
                 'convex': False,
                 'independent_in_checks': True,
                 'loss_at_zero': 0.429587203219485,
                 'margin_only': True,
                 'max_finite_logit': 10000.0,
                 'monotonic': True,
                 'operator': 'diff',
                 'shape': {'dloss': [-0.00677899973283978,
                                     -0.008206854200320517,
                                     -0.0019917497945764273,
                                     -0.00010934202029144619],
                           'logit': [-2.0, 0.0, 2.0, 5.0],
                           'loss': [0.6060885471773775,
                                    0.429587203219485,
                                    0.33423535128313137,
                                    0.3143579457000414]},
                 'slope_at_zero': -0.008206854200320517,
                 'sympy_note': 'ok',
                 'sympy_seconds': 0.03768053599924315,
                 'uses_reference': True},
 'exported_at': '2026-12-04T19:01:28+00:00',
 'exported_by': 'discovery 0.1.0',
 'fitness': {'betas': [0.0125, 0.05, 0.2],
             'ci_high': 0.08932664553738431,
             'ci_low': 0.036377898903769294,
             'fidelity': 'full',
             'interval': 'Student t over seeds',
             'level': 0.95,
             'mean': 0.06285227222057681,
             'n': 9,
             'seeds': [0, 1, 2, 3, 4, 5, 6, 7, 8],
             'values': [0.0019449859391897917,
                        0.09098350256681442,
                        0.07315141707658768,
                        0.09715379029512405,
                        0.0596434585750103,
                        0.1094706803560257,
                        0.027508269995450974,
                        0.059056732803583145,
                        0.04675761237740517]},
 'formula': {'latex': '\\log{\\left(1 + e^{- \\frac{1}{1 + e^{- \\beta \\left(\\rho + \\frac{1}{2 '
                      '\\beta}\\right)}}} \\right)}',
             'margin': 'rho = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))',
             'plain': 'log(1 + exp(-1/(1 + exp(-beta*(rho + 1/(2*beta))))))'},
 'function': 'preference_margin_loss',
 'results_per_beta': [{'beta': 0.0125,
                       'ci_high': 0.08932664553738431,
                       'ci_low': 0.036377898903769294,
                       'failed': 0,
                       'fidelity': 'full',
                       'fitness': 0.06285227222057681,
                       'heldout_accuracy': 0.8990885416666666,
                       'kl': 16.043825149536133,
                       'n': 9,
                       'seeds': [0, 1, 2, 3, 4, 5, 6, 7, 8]},
                      {'beta': 0.05,
                       'ci_high': 0.0683842884313863,
                       'ci_low': 0.024388085705194056,
                       'failed': 0,
                       'fidelity': 'full',
                       'fitness': 0.04638618706829018,
                       'heldout_accuracy': 0.9001736111111112,
                       'kl': 15.938685946994358,
                       'n': 9,
                       'seeds': [0, 1, 2, 3, 4, 5, 6, 7, 8]},
                      {'beta': 0.2,
                       'ci_high': -0.006779871686453491,
                       'ci_low': -0.03999693421441164,
                       'failed': 0,
                       'fidelity': 'full',
                       'fitness': -0.023388402950432565,
                       'heldout_accuracy': 0.9040798611111112,
                       'kl': 15.007303767734104,
                       'n': 9,
                       'seeds': [0, 1, 2, 3, 4, 5, 6, 7, 8]},
                      {'beta': 0.1,
                       'ci_high': None,
                       'ci_low': None,
                       'failed': 0,
                       'fidelity': 'screen',
                       'fitness': -0.2028197944164276,
                       'heldout_accuracy': 0.8984375,
                       'kl': 14.179693222045898,
                       'n': 1,
                       'seeds': [0]}],
 'run': {'created_at': '2026-12-04T17:50:55+00:00',
         'dir': '/tmp/exp17h/runs/hybrid-seed1',
         'git_revision': '99a9d29966db4bebe217e2d17ad898397cbcd086',
         'host': 'root@vm (2 cpus)',
         'schema_version': 2},
 'selection': 'chosen by hand: candidate #11 (status evaluated)',
 'selftest': {'atol': 1e-08, 'probe_values_match_archive': False, 'rtol': 1e-05},
 'task': {'cache_key': '8dc212b6c6c2', 'name': 'synthetic'},
 'thought': '',
 'train_beta': 0.1,
 'versions': {'export': {'accelerate': '1.16.0',
                         'datasets': '5.2.0',
                         'discovery': '0.1.0',
                         'python': '3.11.7',
                         'torch': '2.13.0+cpu',
                         'transformers': '5.25.0',
                         'trl': '1.16.0'},
              'run': {'accelerate': '1.16.0',
                      'datasets': '5.2.0',
                      'discovery': '0.1.0',
                      'python': '3.11.7',
                      'torch': '2.13.0+cpu',
                      'transformers': '5.25.0',
                      'trl': '1.16.0'}}}

# Fingerprint probes (float64): inputs, loss and d loss / d policy log-probs stored at export time.
NAN, INF = float("nan"), float("inf")
SELFTEST_CASES = [
    {
        "beta": 0.05,
        "inputs": [
            [-370.49006697573196, -365.6750237346353, -95.50557326475197, -183.96826847657098, -66.4133669258263, -104.56602473184613, -345.96255381187865, -228.11224570365184, -133.77554133586682, -137.495275327501, -446.4216862201411, -444.48951240314443, -396.3642813894052, -448.37890500879246, -402.2910348028006],
            [-77.65746939665094, -461.59261720648806, -46.44815237639687, -422.27315094837275, -32.77939760756407, -65.89824432998037, -91.5935446865212, -183.79758428051926, -337.05929529855024, -78.17882359213641, -151.1610403008984, -52.81422899708275, -107.34681187973004, -423.2165844110431, -70.41991838885718],
            [-350.67570869165024, -353.2062974249643, -91.36863216915665, -182.7736483882504, -64.4744314834207, -101.40230778573795, -343.85311193426674, -225.47888916939078, -135.4456820105983, -137.086033890089, -446.9556013981591, -449.38765419794777, -400.48893219979874, -458.25298544071217, -420.62552014294425],
            [-97.8431111125692, -469.12389089681704, -52.31121128080155, -426.0785308600521, -32.84046216515848, -63.73452738387219, -89.98410280890926, -181.1642277462582, -338.22943597328174, -76.76958215472443, -149.69495547891637, -52.712370791886116, -101.47146269012354, -413.0906648429628, -48.75440372900086],
        ],
        "loss": [0.6060885471773774, 0.522089143917309, 0.4740769841801067, 0.4510547139108649, 0.4379531668844471, 0.4337309400282719, 0.43164905812160426, 0.429587203219485, 0.42754575361688935, 0.4255250665788254, 0.42154730407980845, 0.41014298193013116, 0.392986993541201, 0.3656850903910636, 0.33423535128313137],
        "grad_chosen": [-0.003389499866419891, -0.004779037776980417, -0.004719258359976819, -0.0044678752090141815, -0.00426035152137367, -0.004183528124519299, -0.004143866408239372, -0.004103427100160258, -0.004062252221519835, -0.004020383857094764, -0.003934734838261746, -0.0036654800612419165, -0.0031945749986687397, -0.0022840196221205326, -0.0009958748972882137],
        "grad_rejected": [0.003389499866419891, 0.004779037776980417, 0.004719258359976819, 0.0044678752090141815, 0.00426035152137367, 0.004183528124519299, 0.004143866408239372, 0.004103427100160258, 0.004062252221519835, 0.004020383857094764, 0.003934734838261746, 0.0036654800612419165, 0.0031945749986687397, 0.0022840196221205326, 0.0009958748972882137],
    },
    {
        "beta": 0.1,
        "inputs": [
            [-370.49006697573196, -365.6750237346353, -95.50557326475197, -183.96826847657098, -66.4133669258263, -104.56602473184613, -345.96255381187865, -228.11224570365184, -133.77554133586682, -137.495275327501, -446.4216862201411, -444.48951240314443, -396.3642813894052, -448.37890500879246, -402.2910348028006],
            [-77.65746939665094, -461.59261720648806, -46.44815237639687, -422.27315094837275, -32.77939760756407, -65.89824432998037, -91.5935446865212, -183.79758428051926, -337.05929529855024, -78.17882359213641, -151.1610403008984, -52.81422899708275, -107.34681187973004, -423.2165844110431, -70.41991838885718],
            [-350.67570869165024, -353.2062974249643, -91.36863216915665, -182.7736483882504, -64.4744314834207, -101.40230778573795, -343.85311193426674, -225.47888916939078, -135.4456820105983, -137.086033890089, -446.9556013981591, -449.38765419794777, -400.48893219979874, -458.25298544071217, -420.62552014294425],
            [-97.8431111125692, -469.12389089681704, -52.31121128080155, -426.0785308600521, -32.84046216515848, -63.73452738387219, -89.98410280890926, -181.1642277462582, -338.22943597328174, -76.76958215472443, -149.69495547891637, -52.712370791886116, -101.47146269012354, -413.0906648429628, -48.75440372900086],
        ],
        "loss": [0.6785984621984584, 0.6060885471773775, 0.522089143917309, 0.4740769841801064, 0.44661898660060756, 0.4379531668844471, 0.43373094002827167, 0.429587203219485, 0.42552506657882555, 0.42154730407980867, 0.4138543207793806, 0.39298699354120115, 0.36568509039106356, 0.3342353512831313, 0.3162284183469202],
        "grad_chosen": [-0.001401802146730709, -0.00677899973283978, -0.009558075553960835, -0.009438516719953632, -0.008805690794232376, -0.00852070304274734, -0.00836705624903859, -0.008206854200320517, -0.008040767714189536, -0.007869469676523501, -0.007513910194094202, -0.006389149997337491, -0.00456803924424106, -0.001991749794576422, -0.0002945911608152114],
        "grad_rejected": [0.001401802146730709, 0.00677899973283978, 0.009558075553960835, 0.009438516719953632, 0.008805690794232376, 0.00852070304274734, 0.00836705624903859, 0.008206854200320517, 0.008040767714189536, 0.007869469676523501, 0.007513910194094202, 0.006389149997337491, 0.00456803924424106, 0.001991749794576422, 0.0002945911608152114],
    },
    {
        "beta": 0.5,
        "inputs": [
            [-370.49006697573196, -365.6750237346353, -95.50557326475197, -183.96826847657098, -66.4133669258263, -104.56602473184613, -345.96255381187865, -228.11224570365184, -133.77554133586682, -137.495275327501, -446.4216862201411, -444.48951240314443, -396.3642813894052, -448.37890500879246, -402.2910348028006],
            [-77.65746939665094, -461.59261720648806, -46.44815237639687, -422.27315094837275, -32.77939760756407, -65.89824432998037, -91.5935446865212, -183.79758428051926, -337.05929529855024, -78.17882359213641, -151.1610403008984, -52.81422899708275, -107.34681187973004, -423.2165844110431, -70.41991838885718],
            [-350.67570869165024, -353.2062974249643, -91.36863216915665, -182.7736483882504, -64.4744314834207, -101.40230778573795, -343.85311193426674, -225.47888916939078, -135.4456820105983, -137.086033890089, -446.9556013981591, -449.38765419794777, -400.48893219979874, -458.25298544071217, -420.62552014294425],
            [-97.8431111125692, -469.12389089681704, -52.31121128080155, -426.0785308600521, -32.84046216515848, -63.73452738387219, -89.98410280890926, -181.1642277462582, -338.22943597328174, -76.76958215472443, -149.69495547891637, -52.712370791886116, -101.47146269012354, -413.0906648429628, -48.75440372900086],
        ],
        "loss": [0.6931471788608115, 0.6931097581464347, 0.6876687982823015, 0.6353208360314699, 0.522089143917309, 0.4740769841801067, 0.45105471391086377, 0.429587203219485, 0.4101429819301321, 0.3929869935412015, 0.36568509039106295, 0.32623918798145624, 0.3143579457000414, 0.3132690930806669, 0.3132616878544407],
        "grad_chosen": [-8.495669476561338e-10, -1.87094561958991e-05, -0.002701634250353263, -0.024685803425200225, -0.04779037776980417, -0.04719258359976818, -0.04467875209014165, -0.04103427100160258, -0.036654800612419415, -0.03194574998668755, -0.022840196221205068, -0.006287855537022121, -0.0005467101014572309, -3.702716531190949e-06, -1.6810894485255103e-10],
        "grad_rejected": [8.495669476561338e-10, 1.87094561958991e-05, 0.002701634250353263, 0.024685803425200225, 0.04779037776980417, 0.04719258359976818, 0.04467875209014165, 0.04103427100160258, 0.036654800612419415, 0.03194574998668755, 0.022840196221205068, 0.006287855537022121, 0.0005467101014572309, 3.702716531190949e-06, 1.6810894485255103e-10],
    },
]
RTOL, ATOL = 1e-5, 1e-8


def make_dpo_trainer_class(base=None):
    """A `trl.DPOTrainer` subclass that trains with `preference_margin_loss` (`base` defaults to DPOTrainer).

    Use it like DPOTrainer; beta comes from `DPOConfig(beta=...)` and `loss_type` is ignored. Reference
    log-probs come from TRL: precomputed (`precompute_ref_log_probs=True`), a `ref_model`, or the PEFT
    base model. Logs TRL's rewards/* and logps/* metrics.
    """
    from trl import DPOTrainer

    base = DPOTrainer if base is None else base

    class PreferenceMarginLossDPOTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            chosen, rejected = _policy_logps(model, inputs).chunk(2, dim=0)
            if "ref_chosen_logps" in inputs:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_model = self.ref_model if self.ref_model is not None else self.model
                ref_chosen, ref_rejected = self.compute_ref_log_probs(ref_model, inputs)
            ref_chosen, ref_rejected = ref_chosen.to(chosen), ref_rejected.to(chosen)
            losses = LOSS(chosen, rejected, ref_chosen, ref_rejected, float(self.beta))
            if losses.dim() > 1 or (losses.dim() == 1 and losses.shape[0] != chosen.shape[0]):
                raise ValueError(f"preference_margin_loss returned shape {tuple(losses.shape)}, expected ({chosen.shape[0]},)")
            loss = losses.mean()
            self._log_pair_metrics(mode, chosen.detach(), rejected.detach(), ref_chosen, ref_rejected)
            return (loss, {"chosen_logps": chosen, "rejected_logps": rejected}) if return_outputs else loss

        def _log_pair_metrics(self, mode, chosen, rejected, ref_chosen, ref_rejected):
            gather = self.accelerator.gather_for_metrics
            chosen_rewards = self.beta * (chosen - ref_chosen)
            rejected_rewards = self.beta * (rejected - ref_rejected)
            metrics = self._metrics[mode]
            metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
            metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
            metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
            metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
            metrics["logps/chosen"].append(gather(chosen).mean().item())
            metrics["logps/rejected"].append(gather(rejected).mean().item())

    PreferenceMarginLossDPOTrainer.__name__ = PreferenceMarginLossDPOTrainer.__qualname__ = "PreferenceMarginLossDPOTrainer"
    return PreferenceMarginLossDPOTrainer


def _policy_logps(model, inputs):
    """Summed completion log-probs of each sequence (TRL's fused LM head; batch is [chosen; rejected])."""
    mask = inputs["completion_mask"]
    kwargs = {k: v for k, v in inputs.items() if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
    labels = inputs["input_ids"].masked_fill(mask == 0, -100)
    outputs = model(**kwargs, use_cache=False, labels=labels, fused_lm_head=True)
    shift = mask[..., 1:]
    per_token = outputs.log_probs[:, -shift.size(1):]
    return (per_token * shift).sum(dim=1)


def self_test(verbose=True):
    """True when the loss and its gradients match the stored probe values (float64, rtol 1e-5, atol 1e-8)."""
    failures = []
    for case in SELFTEST_CASES:
        pc, pr, rc, rr = (torch.tensor(v, dtype=torch.float64) for v in case["inputs"])
        pc.requires_grad_(True)
        pr.requires_grad_(True)
        out = LOSS(pc, pr, rc, rr, case["beta"])
        g_c, g_r = torch.autograd.grad(out.sum(), (pc, pr), allow_unused=True)
        got = {"loss": out.detach().double(),
               "grad_chosen": torch.zeros_like(pc) if g_c is None else g_c,
               "grad_rejected": torch.zeros_like(pr) if g_r is None else g_r}
        for key, value in got.items():
            want = torch.tensor(case[key], dtype=torch.float64)
            if value.shape != want.shape or not torch.allclose(value, want, rtol=RTOL, atol=ATOL, equal_nan=True):
                diff = (value - want).abs().nan_to_num(0.0).max().item() if value.shape == want.shape else float("nan")
                failures.append(f"beta={case['beta']}: {key} differs (max abs diff {diff:.3g})")
    if verbose:
        checks = 3 * len(SELFTEST_CASES)
        print(f"preference_margin_loss self-test: {checks - len(failures)}/{checks} probe checks passed "
              f"(torch {torch.__version__})")
        for line in failures:
            print("  FAILED", line)
    return not failures


if __name__ == "__main__":
    import sys

    sys.exit(0 if self_test() else 1)
